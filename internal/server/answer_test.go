package server

import (
	"encoding/json"
	"testing"
)

// The hand-written answer is byte for byte what encoding/json makes of tokenResponse.
func FuzzTokenAnswerEncodesAsEncodingJSON(f *testing.F) {
	for _, s := range []string{
		"eyJhbGciOiJub25lIn0.eyJzYW5kYm94Ijp0cnVlfQ.c2lnbg", "", `quote " backslash \ slash /`,
		"<script>&amp;</script>", "ctrl \x00\x01\x08\x0c\n\r\t\x1f\x7f", "é 日本 🙂", "bad \xff\xfe utf8 \xe2\x82",
		"sep \u2028 \u2029", "\ufffd",
	} {
		f.Add(s, "sales", "rule-"+s, true)
		f.Add("tok", s, "", false)
	}
	f.Fuzz(func(t *testing.T, token, persona, rule string, hasRule bool) {
		a := tokenResponse{SessionToken: token, Persona: persona, ConfigVersion: rule + persona}
		if hasRule {
			a.Rule = &rule
		}
		want, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendTokenResponse(nil, a); string(got) != string(want) {
			t.Errorf("encoded %q, encoding/json %q", got, want)
		}
	})
}
