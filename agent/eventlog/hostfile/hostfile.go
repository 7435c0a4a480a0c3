// Package hostfile is the node-file sink of the policy event log: the same JSON lines
// as stdout, appended to a file on the node that is rotated by size, so that a node log
// agent (CloudWatch agent, Fluent Bit) ships it as a stream of its own.
package hostfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gopkg.in/natefinch/lumberjack.v2"
)

// Options of the file sink.
type Options struct {
	// Path of the current file; rotated files sit next to it with a timestamp.
	Path string
	// MaxSizeMB is the size at which the file is rotated (lumberjack counts megabytes).
	MaxSizeMB int
	// MaxBackups is how many rotated files are kept; older ones are deleted.
	MaxBackups int
}

// Validate reports bad options without touching the file system.
func (o Options) Validate() error {
	var errs []error
	if o.Path == "" || !filepath.IsAbs(o.Path) {
		errs = append(errs, fmt.Errorf("event log file %q: want an absolute path", o.Path))
	}
	if o.MaxSizeMB < 1 {
		errs = append(errs, fmt.Errorf("event log file max size %d MB: want 1 or more", o.MaxSizeMB))
	}
	if o.MaxBackups < 1 {
		errs = append(errs, fmt.Errorf("event log file max backups %d: want 1 or more (0 would keep every rotated file)", o.MaxBackups))
	}
	return errors.Join(errs...)
}

// Open returns the rotating writer. The file is created now, so that a path the agent
// cannot write fails at start-up rather than at the first event. Each Write must be a
// whole line (json.Encoder writes one value per call): rotation happens between writes,
// so no line is ever split across files.
func Open(o Options) (io.WriteCloser, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o750); err != nil {
		return nil, fmt.Errorf("event log file: %w", err)
	}
	f, err := os.OpenFile(o.Path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("event log file: %w", err)
	}
	f.Close()
	return &lumberjack.Logger{Filename: o.Path, MaxSize: o.MaxSizeMB, MaxBackups: o.MaxBackups}, nil
}
