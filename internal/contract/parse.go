package contract

import (
	"fmt"
	"slices"
	"strings"
)

// parseName returns s as a T if it is one of valid; the error names what was parsed and
// lists the valid values, so a user sees what to write instead.
func parseName[T ~string](what, s string, valid ...T) (T, error) {
	if slices.Contains(valid, T(s)) {
		return T(s), nil
	}
	names := make([]string, len(valid))
	for i, v := range valid {
		names[i] = string(v)
	}
	list := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	return "", fmt.Errorf("unknown %s %q: want %s", what, s, list)
}
