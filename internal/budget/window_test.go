package budget

import (
	"testing"
	"time"
)

func TestWindowBounds(t *testing.T) {
	now := time.Date(2026, 11, 27, 13, 45, 10, 0, time.UTC) // a Friday
	for _, tc := range []struct {
		window     string
		start, end string
	}{
		{"day", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00Z"},
		{"week", "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z"},
		{"month", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"1h", "2026-11-27T13:00:00Z", "2026-11-27T14:00:00Z"},
		{"15m", "2026-11-27T13:45:00Z", "2026-11-27T14:00:00Z"},
	} {
		w, err := ParseWindow(tc.window)
		if err != nil {
			t.Fatal(err)
		}
		start, end := w.Bounds(now)
		if got := start.Format(time.RFC3339); got != tc.start {
			t.Errorf("%s: start %s, want %s", tc.window, got, tc.start)
		}
		if got := end.Format(time.RFC3339); got != tc.end {
			t.Errorf("%s: end %s, want %s", tc.window, got, tc.end)
		}
	}
	// A Monday starts its own week, and a Sunday belongs to the week before.
	w, _ := ParseWindow("week")
	if s, _ := w.Bounds(time.Date(2026, 11, 30, 0, 0, 1, 0, time.UTC)); s.Day() != 30 {
		t.Errorf("Monday's week starts on the %d", s.Day())
	}
	if s, _ := w.Bounds(time.Date(2026, 11, 29, 23, 0, 0, 0, time.UTC)); s.Day() != 23 {
		t.Errorf("Sunday's week starts on the %d", s.Day())
	}
	for _, bad := range []string{"fortnight", "0s", "500ms", "-1h"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("window %q accepted", bad)
		}
	}
}
