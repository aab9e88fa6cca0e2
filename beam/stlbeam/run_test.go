package stlbeam

import (
	"context"
	"errors"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/prism"

	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/internal/runcmp"
)

// smallRun is a run of a few seconds on the CIFAR-10 sample: one
// deterministic attack, the STL rows (retrained, so the training set is
// transformed too) and a randomized baseline that skips to each shard's
// first image (pixel deflection).
func smallRun() experiment.Config {
	cfg := experiment.DefaultConfig()
	cfg.Name, cfg.Limit, cfg.TestLimit, cfg.Epochs = "small", 60, 60, 1
	cfg.Attacks, cfg.Baselines = []string{experiment.AttackFGSM008}, []string{"deflect"}
	cfg.DictImages, cfg.DictIterations, cfg.DAEEpochs, cfg.GridImages = 8, 2, 1, 0
	cfg.LambdaSweep = []float64{}
	return cfg
}

// runSmall runs smallRun in dir with executor e (nil: in-process).
func runSmall(ctx context.Context, dir string, e experiment.Executor) error {
	b := experiment.DefaultBackend()
	b.Executor = e
	_, err := experiment.RunWith(ctx, smallRun(), b, dir, nil)
	return err
}

// TestRunExecutor runs a small stl run in-process and with its heavy
// stages as pipelines on prism (Executor, 3 shards, 2 workers), the
// latter cancelled once its fourth pipeline has run (its parts finished,
// its stage not published) and run again, and checks that the re-run
// skips exactly that stage's shards and that every stage's images are
// byte-identical to the in-process run's and results.json equal but for
// its timing.
func TestRunExecutor(t *testing.T) {
	if testing.Short() {
		t.Skip("trains real models twice")
	}
	local, piped := t.TempDir(), t.TempDir()
	if err := runSmall(context.Background(), local, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sh := Sharding{Shards: 3, Workers: 2}
	pipelines := 0
	stopped := &Executor{Sharding: sh, Run: func(ctx context.Context, p *beam.Pipeline) (beam.PipelineResult, error) {
		res, err := prism.Execute(ctx, p)
		if pipelines++; pipelines == 4 && err == nil {
			cancel()
			return nil, ctx.Err()
		}
		return res, err
	}}
	if err := runSmall(ctx, piped, stopped); !errors.Is(err, context.Canceled) {
		t.Fatalf("run cancelled after 4 pipelines: %v, want %v", err, context.Canceled)
	}
	if stages, computed, skipped := stopped.Counts(); stages != 3 || computed != 9 || skipped != 0 {
		t.Errorf("cancelled run: %d stages, %d shards computed, %d skipped; want 3, 9 and 0", stages, computed, skipped)
	}
	again := &Executor{Sharding: sh, Run: prism.Execute}
	if err := runSmall(context.Background(), piped, again); err != nil {
		t.Fatal(err)
	}
	// 9 stages in all: 1 attack; STL and STL (cluster) on the test,
	// adversarial and training sets; pixel deflection on the first two.
	// The re-run finds the first three published and the fourth's three
	// shards finished.
	if stages, computed, skipped := again.Counts(); stages != 6 || computed != 15 || skipped != 3 {
		t.Errorf("re-run: %d stages, %d shards computed, %d skipped; want 6, 15 and 3", stages, computed, skipped)
	}
	sameRuns(t, local, piped)
}

// sameRuns checks that the stages' images of two run directories are
// byte-identical and their results.json equal but for the timing.
func sameRuns(t *testing.T, a, b string) {
	t.Helper()
	diffs, images, err := runcmp.Diff(a, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
	if images < 10 {
		t.Errorf("%d image files in the stages of %s, want 10 or more", images, a)
	}
}
