// Package budget controls what sessions cost: the `budgets:` of rule files — how many tokens,
// session minutes and open sessions a key (a user, or everyone) may have per window — and the
// stores that count them, atomically, in memory or shared by a fleet.
package budget

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/persona-router/persona-router/internal/catalogue"
	"github.com/persona-router/persona-router/internal/expression"
	"github.com/persona-router/persona-router/internal/source"
)

// Budget is one entry of a rules file's `budgets:`.
type Budget struct {
	Name string
	Pos  source.Pos
	// When selects the requests the budget applies to; nil applies to every request.
	When *vm.Program
	// Key gives whose budget a request spends; nil is the user's id, else the client address.
	Key    *vm.Program
	KeySrc string
	Window Window
	// Sessions, Minutes and Concurrent are the limits per key; 0 is no limit of that kind.
	Sessions, Minutes, Concurrent int
}

// Window is the period a budget's sessions and minutes are counted over: a calendar day, week
// (from Monday) or month in UTC, or a fixed duration counted from the Unix epoch.
type Window struct {
	Calendar string
	Every    time.Duration
}

// ParseWindow reads day, week, month or a Go duration of at least a second (1h, 30m).
func ParseWindow(s string) (Window, error) {
	switch s {
	case "day", "week", "month":
		return Window{Calendar: s}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second {
		return Window{}, fmt.Errorf("window must be day, week, month or a duration of at least 1s (like 1h), got %q", s)
	}
	return Window{Every: d}, nil
}

func (w Window) String() string {
	if w.Calendar != "" {
		return w.Calendar
	}
	return w.Every.String()
}

// Bounds returns the window that holds now: when it started and when it ends (the reset).
func (w Window) Bounds(now time.Time) (start, end time.Time) {
	now = now.UTC()
	y, m, d := now.Date()
	switch w.Calendar {
	case "day":
		start = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 1)
	case "week":
		start = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		start = start.AddDate(0, 0, -(int(start.Weekday())+6)%7)
		return start, start.AddDate(0, 0, 7)
	case "month":
		start = time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	start = now.Truncate(w.Every)
	return start, start.Add(w.Every)
}

var budgetKeys = []string{"name", "when", "key", "window", "sessions", "minutes", "concurrent"}

// Parse reads a rules file's `budgets:` list, compiling its expressions with c. Budget
// expressions may read `rule` (the rule that chose the persona, "" for the default) and
// `persona` (the persona config rendered for the request) besides the request.
func Parse(path string, n *yaml.Node, c *expression.Compiler) ([]*Budget, source.Errors) {
	items, err := source.Sequence(path, n, "budgets")
	if err != nil {
		return nil, source.Errors{err}
	}
	c.AllowRule(true)
	c.AllowPersona(catalogue.PersonaConfig.Names())
	defer func() { c.AllowRule(false); c.AllowPersona(nil) }()
	var out []*Budget
	var errs source.Errors
	for _, item := range items {
		b, berrs := parseBudget(path, item, c)
		errs.Add(berrs...)
		if b != nil {
			out = append(out, b)
		}
	}
	return out, errs
}

func parseBudget(path string, n *yaml.Node, c *expression.Compiler) (*Budget, source.Errors) {
	pairs, errs := source.Mapping(path, n, "budget", budgetKeys)
	b := &Budget{Pos: source.At(path, n)}
	for _, p := range pairs {
		var err *source.Error
		switch p.Key {
		case "name":
			b.Name, err = source.NonEmptyString(path, p.Value, "budget name")
		case "when", "key":
			var src string
			if src, err = source.NonEmptyString(path, p.Value, p.Key); err == nil {
				prog, cerr := c.Compile(src)
				if cerr != nil {
					errs.Add(expression.ErrorAt(path, p.Value, 0, p.Key, cerr))
					continue
				}
				if p.Key == "when" {
					b.When = prog
				} else {
					b.Key, b.KeySrc = prog, src
				}
			}
		case "window":
			var s string
			if s, err = source.NonEmptyString(path, p.Value, "window"); err == nil {
				w, werr := ParseWindow(s)
				if werr != nil {
					err = source.Errorf(source.At(path, p.Value), "%v", werr)
				}
				b.Window = w
			}
		case "sessions", "minutes", "concurrent":
			var v int
			if v, err = source.Int(path, p.Value, p.Key); err == nil && v < 1 {
				err = source.Errorf(source.At(path, p.Value), "%s must be a positive integer, got %d", p.Key, v)
			}
			switch p.Key {
			case "sessions":
				b.Sessions = v
			case "minutes":
				b.Minutes = v
			default:
				b.Concurrent = v
			}
		}
		if err != nil {
			errs.Add(err)
		}
	}
	has := func(k string) bool {
		return slices.ContainsFunc(pairs, func(p source.Field) bool { return p.Key == k })
	}
	if !has("name") && !source.Misspelt(n, "name") {
		errs.Addf(b.Pos, "budget has no name (required)")
	}
	if b.Sessions == 0 && b.Minutes == 0 && b.Concurrent == 0 && len(errs) == 0 {
		errs.Addf(b.Pos, "budget %q limits nothing: give sessions, minutes and/or concurrent", b.Name)
	}
	if (b.Sessions > 0 || b.Minutes > 0) && !has("window") && len(errs) == 0 {
		errs.Addf(b.Pos, "budget %q counts sessions or minutes, so it needs a window (day, week, month or a duration like 1h)", b.Name)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return b, nil
}

// Check checks the budgets of every rules file together: names are unique.
func Check(all []*Budget) source.Errors {
	var errs source.Errors
	first := make(map[string]*Budget)
	for _, b := range all {
		if prev, dup := first[b.Name]; dup {
			errs.Addf(b.Pos, "duplicate budget name %q (first defined at %s)", b.Name, prev.Pos)
			continue
		}
		first[b.Name] = b
	}
	return errs
}

// ReadsPersona tells whether any budget's expressions read `persona`, which then has to be
// decoded from the rendered request for each request.
func ReadsPersona(all []*Budget) bool {
	for _, b := range all {
		if (b.When != nil && expression.Reads(b.When, "persona")) || (b.Key != nil && expression.Reads(b.Key, "persona")) {
			return true
		}
	}
	return false
}

// Claims returns, for one decided request, the budgets that apply to it with the key each is
// spent under. fallback is the key when a budget gives none and the request has no user id (the
// client address). A budget whose `when` or key fails at run time does not apply, and is
// reported in failed.
func Claims(all []*Budget, ev *expression.Evaluator, userID, fallback string, now time.Time) (claims []Claim, failed []error) {
	for _, b := range all {
		if b.When != nil {
			v, err := ev.Eval(b.When)
			if err != nil {
				failed = append(failed, fmt.Errorf("budget %q: when: %w", b.Name, err))
				continue
			}
			if ok, isBool := v.(bool); !isBool || !ok {
				if !isBool {
					failed = append(failed, fmt.Errorf("budget %q: when gave %v (%T), not a boolean", b.Name, v, v))
				}
				continue
			}
		}
		key := userID
		if key == "" {
			key = fallback
		}
		if b.Key != nil {
			v, err := ev.Eval(b.Key)
			s, isString := v.(string)
			if err != nil || !isString || s == "" {
				if err == nil {
					err = fmt.Errorf("gave %v (%T), not a non-empty string", v, v)
				}
				failed = append(failed, fmt.Errorf("budget %q: key: %w", b.Name, err))
				continue
			}
			key = s
		}
		start, end := b.Window.Bounds(now)
		claims = append(claims, Claim{Budget: b, Key: key, Start: start, Reset: end})
	}
	return claims, failed
}

// id is a claim's counter in a store: the budget, the key and the window it counts in.
func (c Claim) id() string {
	return c.Budget.Name + "\x00" + c.Key + "\x00" + strconv.FormatInt(c.Start.Unix(), 10)
}

// openID is the claim's open sessions, counted across windows.
func (c Claim) openID() string {
	return c.Budget.Name + "\x00" + c.Key
}

// Names lists the budgets of claims, for messages.
func Names(claims []Claim) string {
	names := make([]string, len(claims))
	for i, c := range claims {
		names[i] = c.Budget.Name
	}
	return strings.Join(names, ", ")
}
