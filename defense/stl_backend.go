package defense

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/stl-defense/stl/csc"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// NNDAEFormat is the EncoderFormat of nn's DAE, saved with nn.Save.
const NNDAEFormat = "nn-dae"

// nnDAE adapts nn's DAE to SavableEncoder.
type nnDAE struct{ *nn.DAE }

func (nnDAE) EncoderFormat() string      { return NNDAEFormat }
func (d nnDAE) SaveDir(dir string) error { return nn.Save(dir, d.DAE) }

func init() {
	RegisterEncoderFormat(NNDAEFormat, func(dir string) (Encoder, error) {
		m, err := nn.LoadDAE(dir)
		if err != nil {
			return nil, err
		}
		return nnDAE{m}, nil
	})
}

// trainNNDAE trains nn's default DAE (section 3.4: clean and
// Gaussian-noised copies, clean targets) on x at its own resolution, with
// opt.DAEEpochs epochs and opt.Seed. With opt.CheckpointDir set, nn
// checkpoints every epoch there and resumes.
func trainNNDAE(ctx context.Context, x *tensor.Tensor, opt TrainOptions, rep progress.Reporter) (SavableEncoder, error) {
	_, c, h, w, err := x.NCHW()
	if err != nil {
		return nil, err
	}
	cfg := nn.DefaultDAEConfig()
	cfg.Channels, cfg.Height, cfg.Width, cfg.Seed = c, h, w, uint64(opt.Seed)
	m, err := nn.NewDAE(cfg)
	if err != nil {
		return nil, fmt.Errorf("DAE for %dx%dx%d images: %w", c, h, w, err)
	}
	topt := nn.DefaultDAETrainOptions()
	topt.Epochs, topt.Seed = opt.DAEEpochs, uint64(opt.Seed)
	if opt.CheckpointDir != "" {
		topt.CheckpointDir, topt.Resume = opt.CheckpointDir, true
	}
	if _, err := nn.TrainDAE(ctx, m, x, nil, topt, rep); err != nil {
		return nil, err
	}
	return nnDAE{m}, nil
}

// CSCProjector is the default ProjectorFactory: csc's STL projection
// (Tikhonov lowpass plus the CBPDN reconstruction of the highpass part;
// section 3.2) with csc's default options and the given lambda, but not
// clipped: the STL transforms map the output (ApplyOptions.MapOutput; the
// default clip gives exactly csc's clipped projection). Its Project trusts the caller's check of the values (see
// Projector) and checks only shapes.
func CSCProjector(dict *csc.Dictionary, lambda float64) (Projector, error) {
	return cscProjectorWith(dict, lambda, csc.MethodADMM)
}

// CSCProjectorMethod returns a ProjectorFactory like CSCProjector whose
// CBPDN is solved by method m (csc.Options.Method): csc.MethodActiveSet
// reaches an objective certified within csc.ActiveGapTol (relative) of the
// optimum on every image, at most ADMM's on average, at 2.6-3.6 times the
// images per CPU second of ADMM with learned dictionaries at lambda 0.2
// (docs/csc.md).
func CSCProjectorMethod(m csc.Method) ProjectorFactory {
	return func(dict *csc.Dictionary, lambda float64) (Projector, error) {
		return cscProjectorWith(dict, lambda, m)
	}
}

func cscProjectorWith(dict *csc.Dictionary, lambda float64, m csc.Method) (Projector, error) {
	opt := csc.DefaultProjectOptions()
	opt.CSC.Lambda = lambda
	opt.CSC.Method = m
	opt.Clip = false
	p, err := csc.NewProjection(dict, opt)
	if err != nil {
		return nil, err
	}
	return cscProjector{p}, nil
}

// cscProjector adapts csc's Projection to Projector.
type cscProjector struct{ p *csc.Projection }

// Project implements Projector.
func (c cscProjector) Project(ctx context.Context, dst, src *tensor.Tensor) error {
	return c.p.ProjectFinite(ctx, dst, src)
}

// learnCSC learns a dictionary with csc.Learn (CBPDN and consensus ADMM
// dictionary updates, zero-mean unit-norm filters; section 3.3) on the
// highpass parts of x (csc.Highpass with the lowpass filter of csc's
// default projection: the part of an image the STL codes), with opt's
// filters, size, lambda and iterations and the given seed. With
// opt.CheckpointDir set it checkpoints there every 10 iterations and
// resumes. Reports one unit per iteration with the objective.
func learnCSC(ctx context.Context, x *tensor.Tensor, opt TrainOptions, seed uint64, rep progress.Reporter) (*csc.Dictionary, error) {
	popt := csc.DefaultProjectOptions()
	hi, err := csc.Highpass(ctx, x, popt.TikhonovLambda, popt.Pad)
	if err != nil {
		return nil, err
	}
	lopt := csc.DefaultLearnOptions()
	lopt.Filters, lopt.Size, lopt.Lambda, lopt.Iterations, lopt.Seed = opt.Filters, opt.FilterSize, opt.Lambda, opt.DictIterations, seed
	if opt.CheckpointDir != "" {
		lopt.Checkpoint, lopt.Resume = filepath.Join(opt.CheckpointDir, "dictionary.npy"), true
	}
	rep = progress.Or(rep)
	rec := csc.LearnRecorderFunc(func(s csc.LearnStats) {
		rep.Report("dictionary", s.Iter+1, lopt.Iterations, fmt.Sprintf("objective %.5g", s.Objective))
	})
	return csc.Learn(ctx, hi, lopt, rec)
}

// DefaultBackend returns the backend of the real defense: nn's DAE and
// csc's dictionary learning and STL projection.
func DefaultBackend() Backend {
	return Backend{TrainEncoder: trainNNDAE, LearnDictionary: learnCSC, NewProjector: CSCProjector, Version: backendVersion()}
}

// backendVersion describes the default backend's fixed settings (the DAE
// architecture and recipe, the dictionary learner's and the lowpass
// filter's options) for the checkpoint keys.
func backendVersion() string {
	dae := nn.DefaultDAEConfig()
	dae.Threads = 0 // does not change results
	v := map[string]any{
		"format":  1,
		"dae":     dae,
		"daeopt":  nn.DefaultDAETrainOptions(),
		"learn":   csc.DefaultLearnOptions(),
		"project": csc.DefaultProjectOptions(),
	}
	js, err := json.Marshal(v)
	if err != nil {
		return "unversioned"
	}
	h := sha256.Sum256(js)
	return "nn-dae+csc-learn:" + hex.EncodeToString(h[:8])
}
