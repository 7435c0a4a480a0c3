package hostfile

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"relative path", Options{Path: "events.log", MaxSizeMB: 1, MaxBackups: 1}, "absolute"},
		{"no path", Options{MaxSizeMB: 1, MaxBackups: 1}, "absolute"},
		{"zero size", Options{Path: "/x/events.log", MaxBackups: 1}, "max size"},
		{"zero backups", Options{Path: "/x/events.log", MaxSizeMB: 1}, "max backups"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate(%+v) = %v, want an error about %q", tc.o, err, tc.want)
			}
			if _, err := Open(tc.o); err == nil {
				t.Fatal("Open accepted bad options")
			}
		})
	}
	if err := (Options{Path: "/x/e.log", MaxSizeMB: 1, MaxBackups: 1}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenUnwritable(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Path: filepath.Join(blocker, "events.log"), MaxSizeMB: 1, MaxBackups: 1}); err == nil {
		t.Fatal("Open under a regular file succeeded")
	}
}

// TestRotation writes 3.5 MB of event lines with a 1 MB limit and 2 backups: the files
// left are the current one and 2 rotated ones, none above the limit, each made of whole
// JSON lines, and together they hold the newest lines without a gap.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy-events.log")
	w, err := Open(Options{Path: path, MaxSizeMB: 1, MaxBackups: 2})
	if err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(w)
	pad := strings.Repeat("x", 150)
	const n = 17500 // ~200 bytes each
	for i := 0; i < n; i++ {
		if err := enc.Encode(map[string]any{"seq": i, "verdict": "DENY", "pad": pad}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// lumberjack deletes surplus backups in a goroutine of its own: wait for it.
	var files []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		files, _ = filepath.Glob(filepath.Join(dir, "policy-events*.log"))
		if len(files) <= 3 || time.Now().After(deadline) {
			break
		}
	}
	if len(files) != 3 {
		t.Fatalf("files %v: want the current file and 2 backups", files)
	}
	seqs := map[int]bool{}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 1<<20 {
			t.Errorf("%s: %d bytes, above the 1 MB limit", f, st.Size())
		}
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var l struct{ Seq int }
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("%s: line %q is not JSON (split by rotation?): %v", f, sc.Text(), err)
			}
			seqs[l.Seq] = true
		}
		fh.Close()
	}
	// The newest lines are all there, back to the oldest kept one.
	lowest := n
	for s := range seqs {
		lowest = min(lowest, s)
	}
	for s := lowest; s < n; s++ {
		if !seqs[s] {
			t.Fatalf("line %d missing between the oldest kept (%d) and the newest", s, lowest)
		}
	}
	if kept := n - lowest; kept < 2*(1<<20)/250 {
		t.Errorf("only %d lines kept: %s", kept, fmt.Sprint(files))
	}
}
