package csc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/stl-defense/stl/internal/safefile"
)

// resume restores the dictionary and the iteration count from the
// checkpoint, when there is one.
func (l *learner) resume() error {
	opt := l.opt
	d, it, err := readCheckpoint(opt.Checkpoint)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w (to start afresh, delete %s and %s.json)", err, opt.Checkpoint, opt.Checkpoint)
	}
	if d.M != l.m || d.C != l.c || d.R != opt.Size || d.S != opt.Size {
		return fmt.Errorf("csc: checkpoint %s holds a %dx%dx%dx%d dictionary, options want %dx%dx%dx%d (to start afresh, delete %s and %s.json)",
			opt.Checkpoint, d.M, d.C, d.R, d.S, l.m, l.c, opt.Size, opt.Size, opt.Checkpoint, opt.Checkpoint)
	}
	l.dict, l.start = d, it
	return nil
}

type checkpointMeta struct {
	Iteration int `json:"iteration"`
}

// checkpoint writes the dictionary and the iteration count atomically.
func (l *learner) checkpoint(it int) error {
	if l.opt.Checkpoint == "" {
		return nil
	}
	if err := WriteDictionary(l.opt.Checkpoint, l.dict); err != nil {
		return err
	}
	b, _ := json.Marshal(checkpointMeta{Iteration: it})
	return safefile.WriteBytes(l.opt.Checkpoint+".json", b)
}

func readCheckpoint(path string) (*Dictionary, int, error) {
	b, err := os.ReadFile(path + ".json")
	if err != nil {
		return nil, 0, err
	}
	var meta checkpointMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, 0, fmt.Errorf("csc: checkpoint %s.json: %w", path, err)
	}
	d, err := ReadDictionary(path)
	if err != nil {
		return nil, 0, err
	}
	return d, meta.Iteration, nil
}
