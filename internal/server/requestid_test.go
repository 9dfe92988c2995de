package server

import (
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestValidRequestID(t *testing.T) {
	for id, want := range map[string]bool{
		"req-123.abc":                          true,
		"0220314a-0ea2-4579-9de1-6150a56c0de6": true,
		"a:b_c":                                true,
		strings.Repeat("a", 128):               true,
		strings.Repeat("a", 129):               false,
		"":                                     false,
		"bad id":                               false,
		`x"y`:                                  false,
		"line\nbreak":                          false,
		"é":                                    false,
		"slash/":                               false,
	} {
		if got := validRequestID(id); got != want {
			t.Errorf("validRequestID(%q) = %v, want %v", id, got, want)
		}
	}
}

// Generated ids are version-4 UUIDs, which the validation accepts, and do not repeat.
func TestNewRequestIDsAreUniqueUUIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		id := newRequestID()
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 || !validRequestID(id) {
			t.Fatalf("%q is not a valid version-4 UUID: %v", id, err)
		}
		if seen[id] {
			t.Fatalf("%q generated twice", id)
		}
		seen[id] = true
	}
}
