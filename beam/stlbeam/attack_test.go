package stlbeam

import (
	"context"
	"flag"
	"io"
	"path/filepath"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/prism"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/internal/cli"
	"github.com/stl-defense/stl/nn"
)

// tinyClassifier saves an untrained classifier of the default
// architecture (deterministic under its seed), enough to compare bytes.
func tinyClassifier(t *testing.T, dir string) string {
	t.Helper()
	c := nn.DefaultClassifierConfig()
	c.Threads = 1
	out := filepath.Join(dir, "model")
	m, err := nn.NewClassifier(c)
	if err == nil {
		err = nn.Save(out, m)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// attackFlags returns the flags of `stl attack` parsed from args, with
// the command's defaults.
func attackFlags(t *testing.T, args ...string) cli.AttackFlags {
	t.Helper()
	var f cli.AttackFlags
	fs := flag.NewFlagSet("attack", flag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

// attackReference writes to out the set the library calls of `stl attack`
// (experiment.LoadAttackJob, cli.AttackFlags.SetJobAttack, Run) compute
// under f, and returns out.
func attackReference(t *testing.T, f cli.AttackFlags, out string) string {
	t.Helper()
	f.Opts.Out = out
	ctx := context.Background()
	job, err := experiment.LoadAttackJob(ctx, f.Opts, nil)
	if err == nil {
		err = f.SetJobAttack(ctx, job, nil, io.Discard, nil)
	}
	if err == nil {
		_, err = job.Run(ctx, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runPipeline builds a pipeline with add and runs it on prism, returning
// the shards it computed and skipped.
func runPipeline(t *testing.T, add func(beam.Scope) error) (computed, skipped int64, err error) {
	t.Helper()
	p, s := beam.NewPipelineWithRoot()
	if err := add(s); err != nil {
		t.Fatal(err)
	}
	res, err := prism.Execute(context.Background(), p)
	if err != nil {
		return 0, 0, err
	}
	computed, skipped = ShardCounts(res)
	return computed, skipped, nil
}

// TestAttackPipeline runs FGSM and PGD (seeded random start) as sharded
// pipelines on prism, shards cut at batch boundaries, and checks that
// the merged set equals, byte for byte, the one the library call of `stl
// attack` writes (experiment.LoadAttackJob, cli.AttackFlags.SetJobAttack,
// Run), gray-box through a deterministic baseline for FGSM; and that a
// re-run skips every shard.
func TestAttackPipeline(t *testing.T) {
	dir := t.TempDir()
	model := tinyClassifier(t, dir)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"fgsm", []string{"--attack", "fgsm", "--budget", "0.08", "--defense", "jpeg"}},
		{"pgd", []string{"--attack", "pgd", "--steps", "2", "--seed", "7"}},
	} {
		f := attackFlags(t, append(c.args, "--model", model, "--n", "23", "--batch", "4")...)
		ref := attackReference(t, f, filepath.Join(dir, c.name+"-ref"))

		o := AttackOptions{Flags: f, Sharding: Sharding{Shards: 4}}
		o.Flags.Opts.Out = filepath.Join(dir, c.name)
		for run, want := range []int64{4, 0} {
			computed, skipped, err := runPipeline(t, func(s beam.Scope) error { _, err := Attack(s, o); return err })
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if computed != want || skipped != 4-want {
				t.Errorf("%s run %d: %d shards computed, %d skipped; want %d and %d", c.name, run, computed, skipped, want, 4-want)
			}
			for _, file := range []string{attack.AdvFile, attack.LabelsFile, attack.MetaFile} {
				same(t, filepath.Join(ref, file), filepath.Join(o.Flags.Opts.Out, file))
			}
		}
	}
}

func TestAttackOptions(t *testing.T) {
	_, s := beam.NewPipelineWithRoot()
	valid := attackFlags(t, "--model", "m", "--out", "out")
	for _, c := range []struct {
		name string
		edit func(o *AttackOptions)
	}{
		{"no model", func(o *AttackOptions) { o.Flags.Opts.Model = "" }},
		{"unknown attack", func(o *AttackOptions) { o.Flags.Method = "jsma" }},
		{"negative shards", func(o *AttackOptions) { o.Shards = -1 }},
		{"shard of a shard", func(o *AttackOptions) { o.Flags.Opts.Shard = dataset.Shard{Index: 1, Count: 2} }},
		{"target search", func(o *AttackOptions) { o.Flags.Search = attack.DefaultSearchOptions(); o.Flags.Search.Target = 0.06 }},
		{"uap to fit", func(o *AttackOptions) { o.Flags.Method = cli.MethodUAP }},
	} {
		o := AttackOptions{Flags: valid}
		c.edit(&o)
		if _, err := Attack(s, o); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	if _, err := Attack(s, AttackOptions{Flags: valid}); err != nil {
		t.Errorf("valid options: %v", err)
	}
}
