package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// InstallBinary copies the running executable to binDir/strictgate (atomically, so a
// runtime never executes a half-written file).
func InstallBinary(binDir string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	src, err := os.Open(self)
	if err != nil {
		return fmt.Errorf("open own executable: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(binDir, ".strictgate-*")
	if err != nil {
		return fmt.Errorf("install into %s: %w", binDir, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return fmt.Errorf("copy plugin binary: %w", err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(binDir, PluginType))
}

// ErrNoConfList means the CNI configuration directory holds no .conflist to chain into.
var ErrNoConfList = errors.New("no .conflist in the CNI configuration directory")

// PatchConfList chains entry into the conflist the runtime uses (the first *.conflist
// of confDir in name order), replacing an earlier strictgate entry; with remove it only
// takes the entry out. It writes only on change and returns the file it looked at.
func PatchConfList(confDir string, entry map[string]any, remove bool) (string, bool, error) {
	files, err := filepath.Glob(filepath.Join(confDir, "*.conflist"))
	if err != nil {
		return "", false, err
	}
	slices.Sort(files)
	if len(files) == 0 {
		return "", false, fmt.Errorf("%w %s: install the main CNI plugin first (strictgate chains after it)", ErrNoConfList, confDir)
	}
	path := files[0]
	old, err := os.ReadFile(path)
	if err != nil {
		return path, false, err
	}
	var conf map[string]any
	if err := json.Unmarshal(old, &conf); err != nil {
		return path, false, fmt.Errorf("parse %s: %w", path, err)
	}
	plugins, _ := conf["plugins"].([]any)
	kept := plugins[:0:0]
	for _, p := range plugins {
		if m, ok := p.(map[string]any); ok && m["type"] == PluginType {
			continue
		}
		kept = append(kept, p)
	}
	if len(kept) == 0 && !remove {
		return path, false, fmt.Errorf("%s has no main plugin to chain after", path)
	}
	if !remove {
		kept = append(kept, entry)
	}
	conf["plugins"] = kept
	out, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return path, false, err
	}
	out = append(out, '\n')
	if sameJSON(old, out) {
		return path, false, nil
	}
	tmp := path + ".strictgate.tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return path, false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return path, false, err
	}
	return path, true, nil
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
