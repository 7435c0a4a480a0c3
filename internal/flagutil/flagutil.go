// Package flagutil holds flag.Value types shared by the sub-commands.
package flagutil

import "strings"

// StringList is a repeatable, comma-separated string flag writing to *Dst. The first
// Set replaces the default, so "--opt-out-group=x" means exactly x, not default+x.
type StringList struct {
	Dst *[]string
	set bool
}

// NewStringList returns a StringList writing to dst.
func NewStringList(dst *[]string) *StringList { return &StringList{Dst: dst} }

func (l *StringList) String() string {
	if l == nil || l.Dst == nil {
		return ""
	}
	return strings.Join(*l.Dst, ",")
}

// Set appends the comma-separated, non-empty parts of v.
func (l *StringList) Set(v string) error {
	if !l.set {
		*l.Dst = nil
		l.set = true
	}
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l.Dst = append(*l.Dst, part)
		}
	}
	return nil
}
