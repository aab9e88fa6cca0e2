package attack

import (
	"context"
	"fmt"

	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// RunBatched runs a on x in consecutive batches of at most batchSize images
// and concatenates the results, reporting "attack <name>" progress in
// images after each batch to rep (nil: no reports). It checks ctx between
// batches. The result equals that of one Run on the whole of x for the
// deterministic attacks; PGD's random start depends on the batching.
// Result.Iterations is the sum over batches.
func RunBatched(ctx context.Context, a Attack, m Model, x *tensor.Tensor, labels []int, batchSize int, rep progress.Reporter) (*Result, error) {
	rep = progress.Or(rep)
	if a == nil {
		return nil, fmt.Errorf("attack: nil attack")
	}
	if batchSize < 1 {
		return nil, optErr("RunBatched", "batchSize", batchSize, "must be at least 1")
	}
	if _, err := checkInput(m, x, labels); err != nil {
		return nil, err
	}
	n := x.Shape[0]
	d := len(x.Data) / n
	all := &Result{Adv: tensor.New(x.Shape...)}
	stage := "attack " + a.Name()
	rep.Report(stage, 0, n, "")
	for lo := 0; lo < n; lo += batchSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+batchSize, n)
		xb := &tensor.Tensor{Shape: append([]int{hi - lo}, x.Shape[1:]...), Data: x.Data[lo*d : hi*d]}
		r, err := a.Run(ctx, m, xb, labels[lo:hi])
		if err != nil {
			return nil, fmt.Errorf("attack: images %d-%d: %w", lo, hi-1, err)
		}
		copy(all.Adv.Data[lo*d:hi*d], r.Adv.Data)
		all.Dissim = append(all.Dissim, r.Dissim...)
		all.LInf = append(all.LInf, r.LInf...)
		all.CleanPred = append(all.CleanPred, r.CleanPred...)
		all.AdvPred = append(all.AdvPred, r.AdvPred...)
		all.Success = append(all.Success, r.Success...)
		all.Iterations += r.Iterations
		rep.Report(stage, hi, n, fmt.Sprintf("success %.1f%%", 100*all.SuccessRate()))
	}
	return all, nil
}
