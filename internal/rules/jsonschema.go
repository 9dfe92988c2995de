package rules

import (
	"github.com/persona-router/persona-router/internal/catalogue"
)

// FileSchemaID is the $id of the rules file schema: `persona-router schema rules` writes it,
// conventionally to rules.schema.json.
const FileSchemaID = "https://github.com/persona-router/persona-router/rules.schema.json"

// FileSchema returns the JSON Schema of a rules file, for editors: its rules (whose `set` is
// catalogue.SetSchema), its rule tests and its metadata declarations. The load stays the
// authority: it also compiles expressions and checks what rules and tests refer to.
func FileSchema() map[string]any {
	set := catalogue.SetSchema()
	defs := set["$defs"]
	for _, k := range []string{"$schema", "$id", "$defs", "title"} {
		delete(set, k)
	}
	rule := object("A routing rule: when `when` is true, `persona` serves the request.", map[string]any{
		"name":     nonEmpty("The rule's name, unique across all rule files."),
		"when":     nonEmpty("An expression that must give a boolean, such as context == \"sales\" && metadata.tier == \"enterprise\"."),
		"persona":  nonEmpty("The persona template (personas/<id>.yaml) this rule renders."),
		"priority": map[string]any{"type": "integer", "description": "Higher is tried first; equal priorities keep file-name order, then their order in the file. Default: 0."},
		"set":      set,
		"overlay":  map[string]any{"type": "boolean", "description": "An overlay picks no persona: when it matches, its set applies over the persona another rule (or the default) chose."},
	}, "name", "when")
	// A rule names its persona; an overlay names none and has a set.
	rule["allOf"] = []any{map[string]any{
		"if":   map[string]any{"required": []any{"overlay"}, "properties": map[string]any{"overlay": map[string]any{"const": true}}},
		"then": map[string]any{"required": []any{"set"}, "not": map[string]any{"required": []any{"persona"}}},
		"else": map[string]any{"required": []any{"persona"}},
	}}
	request := object("The request to decide, as a frontend would send it.", map[string]any{
		"context":  map[string]any{"type": "string", "description": "The request's context; \"\" when left out."},
		"metadata": map[string]any{"type": "object", "description": "The request's metadata, checked against the metadata schema as a request's is."},
		"user":     map[string]any{"type": "object", "description": "The signed-in user: id and the identity's other claims; anonymous when left out."},
	})
	session := catalogue.PartialSchema(catalogue.Request)
	session["description"] = "The listed top-level fields of the rendered session-token request (clientLabel, sessionOptions, extra fields), matched like personaConfig."
	// The rest of the request is any extra field; personaConfig is expected on its own.
	session["additionalProperties"] = true
	session["properties"].(map[string]any)[catalogue.PersonaConfig.Name] = false
	personaConfig := catalogue.PartialSchema(catalogue.PersonaConfig)
	personaConfig["description"] = "The listed fields of the rendered personaConfig: a mapping matches an object with at least its keys, a list a list of as many matching items, anything else exactly; a field left out compares as \"\", 0, false or null. (An editor flags fields of extra listed here as unknown; persona-router check takes them.)"
	expect := object("What deciding the request must give; only what is listed is checked.", map[string]any{
		"persona":       map[string]any{"type": "string", "description": "The persona template rendered."},
		"rule":          map[string]any{"type": []string{"string", "null"}, "description": "The rule that matched; null means no rule (the default persona)."},
		"overlays":      map[string]any{"type": "array", "items": map[string]any{"type": "string"}, "description": "The overlay rules applied, in the order they apply."},
		"personaConfig": personaConfig,
		"session":       session,
	})
	test := object("A rule test: a request, and what deciding it must give. A failing test rejects the configuration.", map[string]any{
		"name":    nonEmpty("What the test shows, named in failures."),
		"request": request,
		"expect":  expect,
	}, "name", "expect")
	return map[string]any{
		"$schema":     catalogue.Dialect,
		"$id":         FileSchemaID,
		"title":       "persona-router rules file",
		"description": "A rules file of persona-router (rules/*.yaml): routing rules, their tests and the request metadata frontends may send.",
		"type":        []string{"object", "null"},
		"properties": map[string]any{
			"rules":    listOf("Routing rules, tried by priority, highest first.", rule),
			"tests":    listOf("Rule tests, run at every load.", test),
			"metadata": metadataSchema(),
			"budgets": listOf("Budgets: how many sessions, session minutes and open sessions a key may have.", object("A budget: every budget whose when matches must allow a request.", map[string]any{
				"name":       nonEmpty("The budget's name, unique across all rule files."),
				"when":       nonEmpty("An expression selecting the requests it applies to (it may read rule and persona too); default: every request."),
				"key":        nonEmpty("An expression giving whose budget a request spends; default user.id, else the client address. '\"global\"' is one budget for everyone."),
				"window":     map[string]any{"type": "string", "description": "day, week or month (calendar, UTC), or a duration such as 1h.", "pattern": "^(day|week|month|[0-9.]+(ns|us|µs|ms|s|m|h)([0-9.]+(ns|us|µs|ms|s|m|h))*)$"},
				"sessions":   map[string]any{"type": "integer", "minimum": 1, "description": "At most this many tokens per window per key."},
				"minutes":    map[string]any{"type": "integer", "minimum": 1, "description": "At most this many session minutes per window per key."},
				"concurrent": map[string]any{"type": "integer", "minimum": 1, "description": "At most this many sessions open at once per key."},
			}, "name")),
		},
		"additionalProperties": false,
		"$defs":                defs,
	}
}

// object is the schema of an object of the given members, of which required must be there.
func object(doc string, props map[string]any, required ...string) map[string]any {
	s := map[string]any{"type": "object", "description": doc, "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}

func nonEmpty(doc string) map[string]any {
	return map[string]any{"type": "string", "minLength": 1, "description": doc}
}

// listOf is the schema of a top-level section listing items; a section with nothing under it
// is null.
func listOf(doc string, items map[string]any) map[string]any {
	return map[string]any{"type": []string{"array", "null"}, "description": doc, "items": items}
}

// metadataSchema is the schema of a `metadata:` section, as internal/schema reads it: a
// declaration per key, whose type decides which constraints it takes.
func metadataSchema() map[string]any {
	decl := object("What a metadata key may hold; the key is optional.", map[string]any{
		"type":      map[string]any{"enum": []string{"string", "number", "integer", "boolean"}, "description": "The value's type; integer is a number without fraction."},
		"enum":      map[string]any{"type": "array", "items": map[string]any{"type": []string{"string", "number", "boolean"}}, "description": "The only values allowed, of the declared type."},
		"maxLength": map[string]any{"type": "integer", "minimum": 0, "description": "For a string: at most this many characters."},
		"pattern":   map[string]any{"type": "string", "format": "regex", "description": "For a string: a regular expression (RE2) the value must match; anchor it with ^…$."},
		"min":       map[string]any{"type": "number", "description": "For a number or an integer: the least allowed, inclusive."},
		"max":       map[string]any{"type": "number", "description": "For a number or an integer: the most allowed, inclusive."},
	}, "type")
	all := []any{
		map[string]any{
			"if":   typeIs("string"),
			"else": map[string]any{"properties": map[string]any{"maxLength": false, "pattern": false}},
		},
		map[string]any{
			"if":   typeIs("number", "integer"),
			"else": map[string]any{"properties": map[string]any{"min": false, "max": false}},
		},
	}
	for _, t := range []string{"string", "number", "integer", "boolean"} {
		all = append(all, map[string]any{
			"if":   typeIs(t),
			"then": map[string]any{"properties": map[string]any{"enum": map[string]any{"items": map[string]any{"type": t}}}},
		})
	}
	decl["allOf"] = all
	return map[string]any{
		"type":                 []string{"object", "null"},
		"description":          "The metadata frontends may send: once a key is declared, a request with an undeclared key is refused. Declarations merge across files.",
		"additionalProperties": decl,
	}
}

// typeIs holds for a declaration whose type is one of types.
func typeIs(types ...string) map[string]any {
	return map[string]any{
		"required":   []string{"type"},
		"properties": map[string]any{"type": map[string]any{"enum": types}},
	}
}
