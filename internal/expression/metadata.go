package expression

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/types"

	"github.com/persona-router/persona-router/internal/source"
)

// MetadataKey is the declaration of one metadata key, for type checking expressions.
type MetadataKey struct {
	// Type is string, number, integer or boolean.
	Type string
	// Enum lists the strings a string key may take; nil when any.
	Enum []string
}

// nature is the type the checker gives a read of the key.
func (k MetadataKey) nature() types.Type {
	switch k.Type {
	case "string":
		return types.String
	case "integer":
		return types.Int
	case "number":
		return types.Float
	case "boolean":
		return types.Bool
	}
	return types.Any
}

// WithMetadata declares the metadata keys requests may carry, as a rule file's `metadata:`
// schema does: expressions are then type-checked against it. Reading a key it does not
// declare is an error (with did-you-mean), a declared key has its declared type, and comparing
// a key with enum values with a string it cannot take is an error. Type checking only reports
// errors: programs still run on the JSON values a request carries (nil for an absent key).
// Without it (or with an empty declaration), metadata is dynamic.
func WithMetadata(keys map[string]MetadataKey) Option {
	return func(c *Compiler) {
		if len(keys) > 0 {
			c.meta = maps.Clone(keys)
		}
	}
}

// Type type-checks src against the declared metadata and returns its type: nil when it
// depends on the request (user claims), or when no schema declares metadata.
func (c *Compiler) Type(src string) (reflect.Type, error) {
	if c.meta == nil {
		return nil, nil // Compile and Check already give the types they know
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, nil // Compile reports syntax errors
	}
	vars := variables(tree.Node)
	if ferr := c.declared(tree.Node); ferr != nil {
		return nil, ferr.Bind(tree.Source)
	}
	checked, err := checker.ParseCheck(src, typedConfig(vars, c.meta))
	if err != nil {
		return nil, err
	}
	t := checked.Node.Type()
	if t == nil || t.Kind() == reflect.Interface {
		return nil, nil
	}
	return t, nil
}

// declared finds, in an expression as written, a read of a metadata key the schema does not
// declare, or a comparison of a key with enum values with a string it cannot take.
func (c *Compiler) declared(root ast.Node) *file.Error {
	var found *file.Error
	ast.Walk(&root, visitFunc(func(n *ast.Node) {
		if found != nil {
			return
		}
		if v, ok := asRead(*n); ok && v.from == fromMetadata {
			if _, ok := c.meta[v.key]; !ok {
				names := slices.Sorted(maps.Keys(c.meta))
				found = &file.Error{Location: (*n).Location(), Message: fmt.Sprintf(
					"metadata.%s is not declared in the metadata schema%s (declared: %s)", v.key, source.Suggest(v.key, names), strings.Join(names, ", "))}
			}
			return
		}
		b, ok := (*n).(*ast.BinaryNode)
		if !ok {
			return
		}
		switch b.Operator {
		case "==", "!=":
			found = c.enumValue(b.Left, b.Right)
			if found == nil {
				found = c.enumValue(b.Right, b.Left)
			}
		case "in", "not in":
			if arr, ok := b.Right.(*ast.ArrayNode); ok {
				for _, item := range arr.Nodes {
					if found = c.enumValue(b.Left, item); found != nil {
						return
					}
				}
			}
		}
	}))
	return found
}

// enumValue reports a string literal lit compared with a read of a metadata key whose enum
// does not hold it.
func (c *Compiler) enumValue(read, lit ast.Node) *file.Error {
	v, ok := asRead(read)
	if !ok || v.from != fromMetadata {
		return nil
	}
	s, ok := lit.(*ast.StringNode)
	k := c.meta[v.key]
	if !ok || k.Enum == nil || slices.Contains(k.Enum, s.Value) {
		return nil
	}
	return &file.Error{Location: lit.Location(), Message: fmt.Sprintf(
		"metadata.%s is never %s: the metadata schema allows only %s%s", v.key, strconv.Quote(s.Value), strings.Join(k.Enum, ", "), source.Suggest(s.Value, k.Enum))}
}
