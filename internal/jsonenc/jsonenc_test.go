package jsonenc

import (
	"encoding/json"
	"testing"
)

// AppendString is byte for byte what encoding/json makes of a string.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\" back\\ <html> & \n\t\r\x00\x1f\b\f\x7f", "é\u2028\u2029", "\xff\xfe bad utf8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); string(got) != string(want) {
			t.Errorf("AppendString(%q) = %s, want %s", s, got, want)
		}
	})
}
