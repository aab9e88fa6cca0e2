package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/progress"
)

// SearchFile holds, beside an adversarial set whose strength was searched
// (AttackJob.SearchStrength), the search's outcome: an
// attack.SearchResult with the attack's name.
const SearchFile = "search.json"

// searchRecord is SearchFile's content, and that of the record of the
// probes made (in the checkpoint directory) with the key they were made
// under.
type searchRecord struct {
	Attack string `json:"attack"`
	attack.SearchResult
	Key string `json:"key,omitempty"`
}

// SearchStrength sets the job's attack to the one build returns at the
// strength of knob k (attack.SearchStrength) at which the average
// normalized L2 dissimilarity over the job's images, measured on the
// classifier's normalized tensors (attack.MeanDissimilarityZ), reaches
// o.Target within its tolerance: the budgets of the paper's Table 3
// (Guo et al.'s average of 0.06). Each probe attacks every image in
// batches checkpointed as Run's, its images rounded (attack.Rounded) before
// they are measured when the job rounds; the probes made are recorded in the
// checkpoint directory, so that an interrupted search resumes from its
// last probe, and Run then reuses the last probe's batches. The outcome is
// also written to SearchFile in Out. It reports each probe as "search"
// progress to rep. A target the attack cannot reach gives an
// *attack.SearchError. Not with BPDA or a shard (the strength is the one
// of every attacked image together).
func (j *AttackJob) SearchStrength(ctx context.Context, k attack.Knob, build func(s float64) (attack.Attack, error), o attack.SearchOptions, rep progress.Reporter) (*attack.SearchResult, error) {
	if j.opts.BPDA || !j.opts.Shard.Whole() {
		return nil, errors.New("the strength search runs gray-box over all the images: not with BPDA or a shard")
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := j.readAll(ctx); err != nil {
		return nil, err
	}
	norm, err := j.Normalization()
	if err != nil {
		return nil, err
	}
	if err := j.opts.claimPartial(); err != nil {
		return nil, err
	}
	rep = progress.Or(rep)
	// Probes see the images as Run saves them: rounded when the job rounds.
	raw := build
	build = func(s float64) (attack.Attack, error) {
		a, err := raw(s)
		if err != nil {
			return nil, err
		}
		return j.rounded(a), nil
	}
	first, err := build(k.Init)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s %g %g %d\n", j.runKey(first), k.Param, o.Target, o.Tolerance, o.MaxProbes)
	key := hex.EncodeToString(h.Sum(nil))
	partial := j.partialDir()
	record := filepath.Join(partial, SearchFile)
	var replay []attack.Probe
	var old searchRecord
	if readJSON(record, &old) == nil && old.Key == key {
		replay = old.Probes
	}
	measure := func(ctx context.Context, s float64) (float64, error) {
		a, err := build(s)
		if err != nil {
			return 0, err
		}
		res, err := attack.RunBatches(ctx, a, j.clf, j.Set.Images, j.goal,
			attack.BatchOptions{Size: j.opts.Batch, Progress: rep, CheckpointDir: partial, Key: j.runKey(a)})
		if err != nil {
			return 0, err
		}
		return attack.MeanDissimilarityZ(res.Adv, j.Set.Images, *norm)
	}
	onProbe := func(probes []attack.Probe) error {
		p := probes[len(probes)-1]
		rep.Report("search "+k.Param, len(probes), o.MaxProbes, fmt.Sprintf("%s %.4g: average %.4f (target %g)", k.Param, p.Strength, p.Mean, o.Target))
		if err := os.MkdirAll(partial, 0o755); err != nil {
			return err
		}
		return writeJSON(record, searchRecord{Key: key, SearchResult: attack.SearchResult{Param: k.Param, Target: o.Target, Probes: probes}})
	}
	res, err := attack.SearchStrength(ctx, k, o, measure, replay, onProbe)
	if err != nil {
		return nil, err
	}
	a, err := build(res.Strength)
	if err != nil {
		return nil, err
	}
	j.SetAttack(a)
	if err := os.MkdirAll(j.opts.Out, 0o755); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(j.opts.Out, SearchFile), searchRecord{Attack: j.Name, SearchResult: *res}); err != nil {
		return nil, err
	}
	return res, nil
}
