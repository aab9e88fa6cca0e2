package defense

import (
	"context"
	"fmt"

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
// (Tikhonov lowpass plus the CBPDN reconstruction of the highpass part,
// clipped to [0,1]; section 3.2) with csc's default options and the given
// lambda.
func CSCProjector(dict *tensor.Tensor, lambda float64) (Projector, error) {
	d, err := csc.DictionaryFromSPORCO(dict)
	if err != nil {
		return nil, err
	}
	opt := csc.DefaultProjectOptions()
	opt.CSC.Lambda = lambda
	return csc.NewProjector(d, opt)
}

// DefaultBackend returns the backend of the real defense: nn's DAE and
// csc's dictionary learning and STL projection.
func DefaultBackend() Backend {
	return Backend{TrainEncoder: trainNNDAE, NewProjector: CSCProjector}
}
