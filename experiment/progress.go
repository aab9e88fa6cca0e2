package experiment

import (
	"fmt"
	"math"
	"time"

	"github.com/stl-defense/stl/progress"
)

// planWeights lists the stages in the order the run meets them, each with
// a rough cost in seconds (per-image rates measured on the CIFAR-10 sample
// on 2 busy cores), for the overall time-left estimate. Only the ratios
// matter: the estimate rescales them by the time the computed stages took.
func (r *runner) planWeights() {
	c := r.cfg
	ntrain, ntest, nsub := float64(r.train.Len()), float64(r.test.Len()), float64(len(r.subset))
	px := float64(r.train.Shape().Pixels()) / 3072 // relative to 32x32 RGB
	train := func(epochs int) float64 { return float64(epochs) * ntrain * 5e-3 * px }
	w := []float64{train(c.Epochs)}
	if c.VanillaModel != "" {
		w[0] = 1 // loaded, not trained
	}
	for _, a := range orderedAttacks(c.Attacks) {
		per := map[string]float64{AttackFGSM008: 6e-3, AttackFGSM004: 6e-3, AttackBIM: 3e-2, AttackDeepFool: 5e-2,
			AttackCW: 6e-4 * float64(c.CWIterations*c.CWBinarySteps)}[a]
		cost := nsub * per * px
		if a == AttackUAP { // DeepFool on each fitting image, each pass
			cost = float64(min(c.UAP.uapFitImages(), r.train.Len())*c.UAP.options(0, nil, 0).MaxPasses) * 5e-2 * px
		}
		if c.TargetDissimilarity > 0 && a != AttackUAP {
			cost *= 6 // probes of the strength search
		}
		w = append(w, cost)
	}
	dictImages := float64(c.DictImages)
	if dictImages == 0 {
		dictImages = ntrain / float64(c.Clusters)
	}
	w = append(w, float64(c.DAEEpochs)*ntrain*7e-3+float64(c.Clusters+1)*dictImages*float64(c.DictIterations)*8e-3*px)
	for _, rw := range r.rows[1:] {
		per := 1e-2 * px
		if rw.name == RowSTL || rw.name == RowSTLCluster {
			per = 4e-2 * px
		}
		w = append(w, ntest*per)
		for range c.Attacks {
			w = append(w, nsub*per)
		}
		if rw.retrain {
			w = append(w, ntrain*per, train(c.retrainEpochs()))
		}
	}
	w = append(w, r.advTrainWeights(train, 4e-2*px)...)
	if c.WhiteBox {
		nsub := float64(len(r.wbIdx))
		for range orderedLosses(c.WhiteBoxLosses) { // each loss costs as much
			w = append(w, nsub*float64(c.WhiteBoxSteps)*6e-3*px) // No Defense
			for _, rw := range r.whiteBoxRows()[1:] {
				per := 1e-2 * px
				switch {
				case rw.name == RowATAlone:
					per = 0
				case rw.name == RowSTL || rw.name == RowSTLCluster || rw.atBase != nil:
					per = 4e-2 * px
				}
				w = append(w, nsub*float64(c.WhiteBoxSteps)*(per+6e-3*px))
			}
		}
		for _, rw := range r.rows {
			if !r.sanityRow(rw) {
				continue
			}
			per := 0.0
			switch {
			case rw.name == RowSTL || rw.name == RowSTLCluster:
				per = 4e-2 * px
			case rw.name != NoDefense:
				per = 1e-2 * px
			}
			w = append(w, c.sanityWeight(nsub, per, px))
		}
		w = append(w, r.suiteWeights(nsub, px)...)
	}
	for range c.LambdaSweep {
		w = append(w, 2*nsub*4e-2*px)
	}
	r.weights, r.steps = w, len(w)
}

// next reports overall progress at the start of a stage.
func (r *runner) next(what string) {
	r.mu.Lock()
	step := r.step
	r.mu.Unlock()
	r.rep.Report("stl run", step, r.steps, what)
	r.advance(1)
}

// advance moves the overall position by n stages. The previous stage's
// time counts towards the estimate's rate unless it was too short to have
// been computed (reused from the cache, or skipped).
func (r *runner) advance(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.step > 0 && r.step <= len(r.weights) && !r.stepStart.IsZero() {
		if d := now.Sub(r.stepStart); d > 2*time.Second {
			r.doneSec += d.Seconds()
			r.doneWeight += r.weights[r.step-1]
		}
	}
	r.stepStart = now
	r.step += n
}

// runReporter forwards the libraries' reports with the run's overall
// position and estimated time left appended, so that one terminal line
// shows both the current stage and the whole run.
type runReporter struct {
	inner progress.Reporter
	r     *runner
}

func (p *runReporter) Report(stage string, done, total int, msg string) {
	if stage == "stl run" {
		p.inner.Report(stage, done, total, msg+" "+p.r.overall())
		return
	}
	if msg != "" {
		msg += " "
	}
	p.inner.Report(stage, done, total, msg+"| "+p.r.overall())
}

// overall formats "run 5/29, 3m elapsed, ~7m left". Time left is the
// planned cost of the remaining stages (planWeights) scaled by the ratio of
// time taken to planned cost of the stages computed so far: a rough
// estimate, which improves as the run goes.
func (r *runner) overall() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := fmt.Sprintf("run %d/%d, %s elapsed", r.step, r.steps, time.Since(r.start).Round(time.Second))
	if r.doneWeight > 0 && r.step <= len(r.weights) {
		var rest float64
		start := max(r.step-1, 0)
		for _, w := range r.weights[start:] {
			rest += w
		}
		left := rest*r.doneSec/r.doneWeight - time.Since(r.stepStart).Seconds()
		s += fmt.Sprintf(", ~%s left", (time.Duration(math.Max(0, left)) * time.Second).Round(time.Second))
	}
	return s
}
