package datapath

import (
	"testing"
	"time"
)

// fakeClocks is a monotonic and a wall clock the test moves: the wall clock can be
// stepped without the monotonic one moving, as settimeofday or a VM resume does.
type fakeClocks struct {
	mono int64
	wall time.Time
}

func (f *fakeClocks) advance(d time.Duration) { f.mono += int64(d); f.wall = f.wall.Add(d) }

func (f *fakeClocks) clock() wallClock {
	return wallClock{mono: func() (int64, error) { return f.mono, nil }, wall: func() time.Time { return f.wall }}
}

// TestEventTimesFollowASteppedClock: an event's time is the wall clock when it was
// sent, also after the wall clock was stepped while the agent ran (it once logged
// events 26 s behind `date` after 20 minutes: the offset was taken only at start).
func TestEventTimesFollowASteppedClock(t *testing.T) {
	f := &fakeClocks{mono: int64(3 * time.Hour), wall: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	c := f.clock()
	eventAt := func(ago time.Duration) time.Time {
		t.Helper()
		off, err := c.offset()
		if err != nil {
			t.Fatal(err)
		}
		return decodeEvent(&bpfSgEvent{TimestampNs: uint64(f.mono - int64(ago))}, off).Time
	}
	if got, want := eventAt(5*time.Millisecond), f.wall.Add(-5*time.Millisecond); !got.Equal(want) {
		t.Fatalf("event time %v, want %v", got, want)
	}
	// 20 minutes later the wall clock is stepped forward 26 s.
	f.advance(20 * time.Minute)
	f.wall = f.wall.Add(26 * time.Second)
	// Within offsetRefresh of the last sample the old offset may still be used...
	f.advance(offsetRefresh / 2)
	eventAt(0)
	// ...but no longer than that: from then on events carry the stepped clock's time.
	f.advance(offsetRefresh)
	if got, want := eventAt(time.Millisecond), f.wall.Add(-time.Millisecond); !got.Equal(want) {
		t.Fatalf("after the step: event time %v, want %v (off by %v)", got, want, got.Sub(want))
	}
	// A step backwards too.
	f.wall = f.wall.Add(-time.Hour)
	f.advance(offsetRefresh)
	if got, want := eventAt(0), f.wall; !got.Equal(want) {
		t.Fatalf("after stepping back: event time %v, want %v", got, want)
	}
}
