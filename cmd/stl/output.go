package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// checkOutput is run before any work: it refuses an output path whose
// extension is not one of exts (when exts are given) and one whose
// directory does not exist or cannot be written, so that a long command
// never fails only at its end.
func checkOutput(flag, path string, exts ...string) error {
	if len(exts) > 0 && !slices.Contains(exts, strings.ToLower(filepath.Ext(path))) {
		return usagef("%s %s: want a %s file", flag, path, strings.Join(exts, " or "))
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return usagef("%s %s: the directory %s does not exist", flag, path, dir)
	}
	f, err := os.CreateTemp(dir, ".stl-write-test-*")
	if err != nil {
		return usagef("%s %s: cannot write in %s: %v", flag, path, dir, err)
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return nil
}
