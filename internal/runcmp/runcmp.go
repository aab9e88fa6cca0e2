// Package runcmp compares two run directories of `stl run`: what the tests
// of its executors check (experiment.Executor), that a run whose heavy
// stages were computed elsewhere equals the in-process one.
package runcmp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Diff compares the run directories a and b: every stage's images
// (stages/*/*.npy of a, byte for byte with b's) and results.json but for
// its timing object. It returns what differs (nil when nothing does) and
// the number of image files compared; an error when a's files cannot be
// read.
func Diff(a, b string) (diffs []string, images int, err error) {
	files, err := filepath.Glob(filepath.Join(a, "stages", "*", "*.npy"))
	if err != nil {
		return nil, 0, err
	}
	for _, p := range files {
		rel, err := filepath.Rel(a, p)
		if err != nil {
			return nil, 0, err
		}
		x, err := os.ReadFile(p)
		if err != nil {
			return nil, 0, err
		}
		if y, err := os.ReadFile(filepath.Join(b, rel)); err != nil || !bytes.Equal(x, y) {
			diffs = append(diffs, fmt.Sprintf("%s differs (%v)", rel, err))
		}
	}
	x, err := results(a)
	if err != nil {
		return nil, 0, err
	}
	if y, err := results(b); err != nil || !bytes.Equal(x, y) {
		diffs = append(diffs, fmt.Sprintf("results.json differ (%v):\n%s\n%s", err, x, y))
	}
	return diffs, len(files), nil
}

// results returns a run's results.json without its timing, re-encoded.
func results(dir string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	delete(v, "timing")
	return json.Marshal(v)
}
