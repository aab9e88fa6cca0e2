package nn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/stl-defense/stl/internal/option"
	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/progress"
)

// when there is no test set; for the DAE, accuracies are NaN and the losses
// are BCE.
type EpochStats struct {
	Epoch     int     `json:"epoch"` // 1-based
	LR        float64 `json:"lr"`    // at the end of the epoch
	TrainLoss float64 `json:"train_loss"`
	TrainAcc  float64 `json:"train_acc"`
	TestLoss  float64 `json:"test_loss"`
	TestAcc   float64 `json:"test_acc"`
	Seconds   float64 `json:"seconds"`
	ImgPerSec float64 `json:"img_per_sec"`
	Elapsed   float64 `json:"elapsed"` // training seconds since epoch 1, across resumes
}

// MarshalJSON writes NaN figures as null.
func (s EpochStats) MarshalJSON() ([]byte, error) {
	f := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	return json.Marshal(epochStatsJSON{s.Epoch, s.LR, f(s.TrainLoss), f(s.TrainAcc), f(s.TestLoss), f(s.TestAcc), s.Seconds, s.ImgPerSec, s.Elapsed})
}

// epochStatsJSON is EpochStats with null for the figures that are NaN.
type epochStatsJSON struct {
	Epoch     int      `json:"epoch"`
	LR        float64  `json:"lr"`
	TrainLoss *float64 `json:"train_loss"`
	TrainAcc  *float64 `json:"train_acc"`
	TestLoss  *float64 `json:"test_loss"`
	TestAcc   *float64 `json:"test_acc"`
	Seconds   float64  `json:"seconds"`
	ImgPerSec float64  `json:"img_per_sec"`
	Elapsed   float64  `json:"elapsed"`
}

// UnmarshalJSON reads null figures as NaN.
func (s *EpochStats) UnmarshalJSON(b []byte) error {
	var a epochStatsJSON
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	g := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	*s = EpochStats{a.Epoch, a.LR, g(a.TrainLoss), g(a.TrainAcc), g(a.TestLoss), g(a.TestAcc), a.Seconds, a.ImgPerSec, a.Elapsed}
	return nil
}

// TrainResult is the history of a training run, including epochs done
// before a resume.
type TrainResult struct {
	Epochs []EpochStats `json:"epochs"`
}

// Last returns the last epoch's figures (zero when none).
func (r *TrainResult) Last() EpochStats {
	if len(r.Epochs) == 0 {
		return EpochStats{}
	}
	return r.Epochs[len(r.Epochs)-1]
}

// trainState is the checkpoint index, train_state.json.
type trainState struct {
	Kind      string       `json:"kind"`
	Epoch     int          `json:"epoch"` // epochs completed
	Dir       string       `json:"dir"`   // checkpoint subdirectory
	AdamT     int          `json:"adam_t,omitempty"`
	History   []EpochStats `json:"history"`
	TotalSecs float64      `json:"total_seconds"`
}

const stateFile = "train_state.json"

// loop is the epoch/batch loop shared by classifier and DAE training.
type loop struct {
	kind        string
	epochs      int
	batch       int
	n           int
	seed        uint64
	sched       Schedule
	opt         Optimizer
	adam        *Adam
	params      []*Param
	save        func(dir string) error
	step        func(ctx context.Context, e, b int, idx []int, rng *rand.Rand) (loss float64, correct int, err error) // batch b of epoch e, both 0-based
	eval        func(ctx context.Context) (loss, acc float64, err error)
	reseed      func(epoch int)
	ckpt        string
	resume      bool
	accuracy    bool
	onEpochDone func(st EpochStats)
	epochDone   func(st EpochStats)
}

// runOptions are the fields TrainOptions and DAETrainOptions share, for
// their Validate methods.
type runOptions struct {
	name          string // "TrainOptions"
	epochs, batch int
	minBatch      int
	lr            float64
	schedule      ScheduleKind
	resume        bool
	ckpt          string
}

func (o runOptions) validate() error {
	bad := func(f string, v any, r string) error { return option.New("nn", o.name+"."+f, v, r) }
	switch {
	case o.epochs < 1:
		return bad("Epochs", o.epochs, "want >= 1")
	case o.batch < o.minBatch:
		return bad("BatchSize", o.batch, fmt.Sprintf("want >= %d", o.minBatch))
	case !(o.lr > 0):
		return bad("LR", o.lr, "want > 0")
	case o.resume && o.ckpt == "":
		return bad("Resume", o.resume, "needs a CheckpointDir")
	}
	_, err := o.schedule.build(o.lr, 1, o.epochs)
	return err
}

// plan returns the batch size for n images (batchSize, at most n) and the
// learning-rate schedule over its steps; op names the trainer in the error
// for fewer than 2 images.
func plan(op string, n, batchSize, epochs int, kind ScheduleKind, lr float64) (int, Schedule, error) {
	if n < 2 {
		return 0, nil, errors.New(op + ": need at least 2 training images")
	}
	bs := min(batchSize, n)
	steps := (n + bs - 1) / bs
	sched, err := kind.build(lr, steps, epochs)
	return bs, sched, err
}

// runAndSave runs the loop and then, with a checkpoint directory, saves
// the final model there.
func (l *loop) runAndSave(ctx context.Context, rep progress.Reporter) (*TrainResult, error) {
	res, err := l.run(ctx, rep)
	if err != nil {
		return res, err
	}
	if l.ckpt != "" {
		if err := l.save(l.ckpt); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (l *loop) run(ctx context.Context, rep progress.Reporter) (*TrainResult, error) {
	rep = progress.Or(rep)
	res := &TrainResult{}
	start := 0
	var total float64
	if l.resume {
		st, ok, err := l.load()
		if err != nil {
			return nil, err
		}
		if ok {
			start, res.Epochs, total = st.Epoch, st.History, st.TotalSecs
			// The model's metadata follows the last finished epoch, also
			// when the checkpoint holds every epoch and none runs again.
			if n := len(st.History); n > 0 && l.onEpochDone != nil {
				l.onEpochDone(st.History[n-1])
			}
		}
	}
	steps := (l.n + l.batch - 1) / l.batch
	if l.n%l.batch == 1 {
		steps-- // a last batch of one image would break batch norm
	}
	totalSteps := steps * l.epochs
	for e := start; e < l.epochs; e++ {
		t0 := time.Now()
		rng := rand.New(rand.NewPCG(l.seed, uint64(e)))
		if l.reseed != nil {
			l.reseed(e)
		}
		perm := rng.Perm(l.n)
		var sumLoss float64
		var correct, seen int
		stage := fmt.Sprintf("%s epoch %d/%d", l.kind, e+1, l.epochs)
		lr := 0.0
		for b := 0; b < steps; b++ {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			idx := perm[b*l.batch : min((b+1)*l.batch, l.n)]
			loss, c, err := l.step(ctx, e, b, idx, rng)
			if err != nil {
				return res, err
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return res, fmt.Errorf("nn: training diverged at epoch %d batch %d (loss %g); lower the learning rate", e+1, b+1, loss)
			}
			lr = l.sched.LR(e*steps+b, totalSteps)
			l.opt.Step(l.params, lr)
			if name, v, bad := nonFinite(l.params); bad {
				return res, fmt.Errorf("nn: training diverged at epoch %d batch %d: weight %s became %g (loss %g); lower the learning rate; nothing of this epoch was checkpointed", e+1, b+1, name, v, loss)
			}
			sumLoss += loss * float64(len(idx))
			correct += c
			seen += len(idx)
			el := time.Since(t0).Seconds()
			msg := fmt.Sprintf("loss %.4f", sumLoss/float64(seen))
			if l.accuracy {
				msg += fmt.Sprintf(" acc %.2f%%", 100*float64(correct)/float64(seen))
			}
			msg += fmt.Sprintf(" %.0f img/s", float64(seen)/el)
			rep.Report(stage, b+1, steps, msg)
		}
		secs := time.Since(t0).Seconds()
		st := EpochStats{Epoch: e + 1, LR: lr, TrainLoss: sumLoss / float64(seen), TrainAcc: math.NaN(), TestLoss: math.NaN(), TestAcc: math.NaN(),
			Seconds: secs, ImgPerSec: float64(seen) / secs}
		if l.accuracy {
			st.TrainAcc = float64(correct) / float64(seen)
		}
		if l.eval != nil {
			tl, ta, err := l.eval(ctx)
			if err != nil {
				return res, err
			}
			if math.IsNaN(tl) || math.IsInf(tl, 0) {
				return res, fmt.Errorf("nn: training diverged in epoch %d: test loss %g; lower the learning rate; nothing of this epoch was checkpointed", e+1, tl)
			}
			st.TestLoss, st.TestAcc = tl, ta
		}
		total += time.Since(t0).Seconds()
		st.Elapsed = total
		res.Epochs = append(res.Epochs, st)
		if l.onEpochDone != nil {
			l.onEpochDone(st)
		}
		if l.ckpt != "" {
			if err := l.checkpoint(e+1, res.Epochs, total); err != nil {
				return res, err
			}
		}
		if l.epochDone != nil {
			l.epochDone(st)
		}
	}
	return res, nil
}

// nonFinite reports the first parameter holding a NaN or an infinity, with
// the value, so that no non-finite weight is ever checkpointed or saved.
func nonFinite(params []*Param) (name string, v float32, bad bool) {
	for _, p := range params {
		for _, w := range p.W {
			if w-w != 0 { // NaN or ±Inf
				return p.Name, w, true
			}
		}
	}
	return "", 0, false
}

func (l *loop) checkpoint(epoch int, hist []EpochStats, total float64) error {
	sub := fmt.Sprintf("epoch-%03d", epoch)
	dir := filepath.Join(l.ckpt, sub)
	if err := l.save(dir); err != nil {
		return err
	}
	if err := safefile.Write(filepath.Join(dir, "optimizer.safetensors"), func(w io.Writer) error {
		return writeState(w, l.opt.State(l.params))
	}); err != nil {
		return err
	}
	st := trainState{Kind: l.kind, Epoch: epoch, Dir: sub, History: hist, TotalSecs: total}
	if l.adam != nil {
		st.AdamT = l.adam.T
	}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	old, _, _ := readState(l.ckpt)
	if err := safefile.WriteBytes(filepath.Join(l.ckpt, stateFile), append(js, '\n')); err != nil {
		return err
	}
	if old.Dir != "" && old.Dir != sub {
		os.RemoveAll(filepath.Join(l.ckpt, old.Dir))
	}
	return nil
}

func writeState(w io.Writer, st map[string][]float32) error {
	ps := make([]*Param, 0, len(st))
	for n, v := range st {
		ps = append(ps, &Param{Name: n, Shape: []int{len(v)}, W: v})
	}
	return WriteWeights(w, ps, nil)
}

func readState(dir string) (trainState, bool, error) {
	var st trainState
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, false, fmt.Errorf("nn: %s: %w", filepath.Join(dir, stateFile), err)
	}
	return st, true, nil
}

// load restores weights and optimizer state from the last checkpoint.
func (l *loop) load() (trainState, bool, error) {
	st, ok, err := readState(l.ckpt)
	if err != nil || !ok {
		return st, ok, err
	}
	if st.Kind != l.kind {
		return st, false, fmt.Errorf("%w: checkpoint in %s is for %q", ErrWrongKind, l.ckpt, st.Kind)
	}
	if st.Epoch > l.epochs {
		return st, false, fmt.Errorf("nn: checkpoint in %s has %d epochs done, more than the %d asked", l.ckpt, st.Epoch, l.epochs)
	}
	dir := filepath.Join(l.ckpt, st.Dir)
	if _, err := readHeader(dir); err != nil {
		return st, false, err
	}
	if err := loadWeights(dir, l.params); err != nil {
		return st, false, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "optimizer.safetensors"))
	if err != nil {
		return st, false, err
	}
	state := l.opt.State(l.params)
	ps := make([]*Param, 0, len(state))
	for n, v := range state {
		ps = append(ps, &Param{Name: n, Shape: []int{len(v)}, W: v})
	}
	if err := ReadWeights(b, filepath.Join(dir, "optimizer.safetensors"), ps); err != nil {
		return st, false, err
	}
	if l.adam != nil {
		l.adam.T = st.AdamT
	}
	return st, true, nil
}
