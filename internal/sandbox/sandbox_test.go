package sandbox

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/persona-router/persona-router/internal/anam"
)

func TestFakeFollowsTheContract(t *testing.T) {
	srv := httptest.NewServer(&Fake{APIKey: "k"})
	defer srv.Close()
	client := anam.NewClient(srv.URL, "k", srv.Client(), time.Second)
	const ids = `"avatarId":"30fa96d0-26c4-4e55-94a0-517025942e18","voiceId":"6bfbe25a-979d-40f3-a92b-5394170af54b"`
	good := `{"personaConfig":{"name":"n",` + ids + `}}`
	token, err := client.CreateSessionToken(context.Background(), anam.Bytes(good))
	if err != nil || strings.Count(token, ".") != 2 {
		t.Fatalf("token %q, %v", token, err)
	}
	for name, tc := range map[string]struct {
		key  string
		body string
		kind anam.Kind
	}{
		"wrong key":           {"nope", good, anam.AuthFailed},
		"no avatar":           {"k", `{"personaConfig":{"name":"n","voiceId":"6bfbe25a-979d-40f3-a92b-5394170af54b"}}`, anam.Rejected},
		"avatar not UUID":     {"k", `{"personaConfig":{"name":"n","avatarId":"cara","voiceId":"6bfbe25a-979d-40f3-a92b-5394170af54b"}}`, anam.Rejected},
		"stateful bad id":     {"k", `{"personaConfig":{"personaId":"lab"}}`, anam.Rejected},
		"sensitivity > 1":     {"k", `{"personaConfig":{"name":"n",` + ids + `,"voiceDetectionOptions":{"endOfSpeechSensitivity":1.5}}}`, anam.Rejected},
		"webhook without url": {"k", `{"personaConfig":{"name":"n",` + ids + `,"tools":[{"type":"server","subtype":"webhook","name":"a","description":"d"}]}}`, anam.Rejected},
		"width alone":         {"k", `{"personaConfig":{"name":"n",` + ids + `},"sessionOptions":{"videoWidth":640}}`, anam.Rejected},
		"not JSON":            {"k", `{"personaConfig":`, anam.Rejected},
	} {
		c := anam.NewClient(srv.URL, tc.key, srv.Client(), time.Second)
		_, err := c.CreateSessionToken(context.Background(), anam.Bytes(tc.body))
		ae, ok := err.(*anam.Error)
		if !ok || ae.Kind != tc.kind || ae.Attempts != 1 {
			t.Errorf("%s: %v, want %s after one attempt", name, err, tc.kind)
		}
		if err != nil && strings.Contains(err.Error(), tc.key) && tc.key != "k" {
			t.Errorf("%s: the error repeats the key: %v", name, err)
		}
	}
	rich := `{"personaConfig":{"name":"n",` + ids + `,"zeroDataRetention":true,"tools":[{"type":"client","name":"a","description":"d"}],"futureField":1},"clientLabel":"x","environment":{}}`
	if _, err := client.CreateSessionToken(context.Background(), anam.Bytes(rich)); err != nil {
		t.Errorf("a request with new and unknown fields: %v, want a token", err)
	}
}

// TestNewClientStaysInProcess mints through the sandbox's client: a token comes back, a bad
// persona is rejected as Anam would, and a cancelled call fails without reaching the fake.
func TestNewClientStaysInProcess(t *testing.T) {
	client := NewClient(time.Second)
	const ids = `"avatarId":"30fa96d0-26c4-4e55-94a0-517025942e18","voiceId":"6bfbe25a-979d-40f3-a92b-5394170af54b"`
	token, err := client.CreateSessionToken(context.Background(), anam.Bytes(`{"personaConfig":{"name":"n",`+ids+`}}`))
	if err != nil || strings.Count(token, ".") != 2 {
		t.Fatalf("token %q, %v", token, err)
	}
	_, err = client.CreateSessionToken(context.Background(), anam.Bytes(`{"personaConfig":{"name":"n"}}`))
	if ae, ok := err.(*anam.Error); !ok || ae.Kind != anam.Rejected || ae.Status != 400 {
		t.Errorf("a persona without avatar: %v, want rejected with 400", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := client.CreateSessionToken(ctx, anam.Bytes(`{"personaConfig":{"name":"n",`+ids+`}}`)); err == nil {
		t.Error("a cancelled call succeeded")
	}
}
