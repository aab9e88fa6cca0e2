// Command stl-beam runs the project's long image jobs as Apache Beam
// pipelines: the projection of `stl defend`, the attacks of `stl attack`
// and the classification of `stl predict --json`, each over the images
// cut into --shards parts spread over the runner's workers and merged into
// what the plain command writes. Beam's own flags choose the runner
// (--runner=prism, the in-process Go runner, by default; flink, spark or
// dataflow with their endpoints); see docs/scale.md.
//
//	stl-beam defend --defense defenses/c10 --in test.npy --out proj.npy --shards 16
//	stl-beam attack --model models/vgg --attack pgd --out adv/pgd --shards 16
//	stl-beam predict --model models/vgg --in adv/pgd --defense defenses/c10 --out pred.jsonl
//
// A runner that starts this binary as a worker (--worker and Beam's
// harness flags, without a subcommand) gets Beam's worker harness.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/beam/stlbeam"
	"github.com/stl-defense/stl/internal/cli"
)

// Exit codes, as stl's: 1 a failure, 2 a bad command line, 130 cancelled.
const (
	exitFail      = 1
	exitUsage     = 2
	exitCancelled = 130
)

const usage = `usage:
  stl-beam defend  --defense DIR --in IMAGES --out OUT.npy [--universal] [--batch N]
  stl-beam attack  (the flags of stl attack, without --shard and --target-dissimilarity)
  stl-beam predict --model M (--in IMAGES | --data SPEC [--split S]) [--defense D] --out OUT.jsonl
each with [--shards N] [--workers N] [--parts DIR] and Beam's flags [--runner=prism|flink|spark|dataflow ...];
stl-beam CMD --help lists a command's flags`

// command is a subcommand: it registers its flags on flag.CommandLine,
// beside Beam's, and, once they are parsed, adds its pipeline to s and
// returns what to print when the pipeline has run.
type command func(fs *flag.FlagSet) pipeline

// pipeline adds a command's pipeline to s, its images cut into shards
// parts written to parts, and returns what to print once it has run.
type pipeline func(s beam.Scope, sh stlbeam.Sharding) (done func() string, err error)

var commands = map[string]command{"defend": defendCmd, "attack": attackCmd, "predict": predictCmd}

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "-") && os.Args[1] != "-h" && os.Args[1] != "--help" {
		// A worker started by a runner: Beam's harness takes over.
		flag.Parse()
		beam.Init()
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(exitUsage)
	}
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(exitUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1], os.Args[2:], os.Stdout, os.Stderr))
}

// run parses the arguments of the subcommand name and runs its pipeline.
func run(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs := flag.CommandLine
	fs.Init("stl-beam "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sh stlbeam.Sharding
	fs.IntVar(&sh.Shards, "shards", 8, "parts the images are cut into (the pipeline's elements)")
	fs.StringVar(&sh.PartsDir, "parts", "", "directory of the shards' outputs (default: OUT.parts); a re-run skips finished shards")
	fs.IntVar(&sh.Workers, "workers", 1, "shards one worker process computes at once, each worker loading the job's model, defense and images once")
	build := commands[name](fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "stl-beam %s: unexpected arguments %v\n", name, fs.Args())
		return exitUsage
	}
	beam.Init()
	p, s := beam.NewPipelineWithRoot()
	done, err := build(s, sh)
	if err != nil {
		fmt.Fprintln(stderr, "stl-beam:", err)
		return exitUsage
	}
	res, err := beamx.RunWithMetrics(ctx, p)
	if err != nil {
		fmt.Fprintln(stderr, "stl-beam:", err)
		if ctx.Err() != nil {
			return exitCancelled
		}
		return exitFail
	}
	computed, skipped := stlbeam.ShardCounts(res)
	fmt.Fprintf(stdout, "%d shards computed, %d found finished and skipped\n", computed, skipped)
	fmt.Fprintln(stdout, done())
	return 0
}

func defendCmd(fs *flag.FlagSet) pipeline {
	var o stlbeam.DefendOptions
	fs.StringVar(&o.Defense, "defense", "", "defense directory written by 'stl defense train' (required)")
	fs.StringVar(&o.In, "in", "", "images to project, as 'stl defend --in' takes them (required)")
	fs.StringVar(&o.Out, "out", "", "merged output .npy (required)")
	fs.BoolVar(&o.Universal, "universal", false, "use the universal dictionary (STL) instead of the per-cluster ones")
	fs.IntVar(&o.Batch, "batch", 64, "images projected per batch inside a shard")
	return func(s beam.Scope, sh stlbeam.Sharding) (func() string, error) {
		o.Sharding = sh
		_, err := stlbeam.Defend(s, o)
		return func() string { return fmt.Sprintf("projected %s -> %s", o.In, o.Out) }, err
	}
}

func attackCmd(fs *flag.FlagSet) pipeline {
	var o stlbeam.AttackOptions
	o.Flags.Register(fs)
	return func(s beam.Scope, sh stlbeam.Sharding) (func() string, error) {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if err := o.Flags.Check(func(name string) bool { return set[name] }); err != nil {
			return nil, err
		}
		o.Sharding = sh
		_, err := stlbeam.Attack(s, o)
		return func() string { return attackSummary(o.Flags.Opts.Out) }, err
	}
}

// attackSummary describes the merged adversarial set in dir.
func attackSummary(dir string) string {
	s, err := attack.LoadSet(dir)
	if err != nil {
		return fmt.Sprintf("wrote %s (%v)", dir, err)
	}
	m := s.Meta
	return fmt.Sprintf("%s on %d images: success rate %.4f, accuracy clean %.4f, adversarial %.4f; wrote %s (%s, %s, %s)",
		m.Attack, len(s.Labels), m.SuccessRate, m.CleanAccuracy, m.AdvAccuracy, dir, attack.AdvFile, attack.LabelsFile, attack.MetaFile)
}

func predictCmd(fs *flag.FlagSet) pipeline {
	var o stlbeam.PredictOptions
	fs.StringVar(&o.Model, "model", "", cli.UsageAnyModel+" (required)")
	fs.StringVar(&o.Input.Data, "data", "", "data set (see 'stl data'); default the embedded sample unless --in is given")
	fs.StringVar(&o.Input.Split, "split", "test", "with --data: test or train")
	fs.StringVar(&o.Input.In, "in", "", "images to classify instead of a data set: a folder, a .npy, a .bin/.bin.gz or an attack's output")
	fs.StringVar(&o.Defense, "defense", "", "defense in front of the classifier: a directory of 'stl defense train' or a baseline name")
	fs.BoolVar(&o.Universal, "universal", false, "with a defense directory: the universal dictionary (STL) instead of the per-cluster ones")
	fs.IntVar(&o.Input.Limit, "limit", 0, "classify only the first N images (0: all)")
	fs.IntVar(&o.Batch, "batch", 64, "images per batch")
	fs.IntVar(&o.Threads, "threads", 0, "classifier threads (0: as saved)")
	fs.StringVar(&o.Out, "out", "", "merged output: the lines of 'stl predict --json' (required)")
	return func(s beam.Scope, sh stlbeam.Sharding) (func() string, error) {
		o.Sharding = sh
		_, err := stlbeam.Predict(s, o)
		return func() string { return predictSummary(o.Out) }, err
	}
}

// predictSummary describes the merged predictions in out.
func predictSummary(out string) string {
	sum, err := stlbeam.ReadPredictSummary(out)
	switch {
	case err != nil:
		return fmt.Sprintf("wrote %s (%v)", out, err)
	case sum.Accuracy == nil:
		return fmt.Sprintf("%d images classified (no labels: no accuracy); wrote %s", sum.Images, out)
	}
	return fmt.Sprintf("%d images classified: accuracy %.4f (%d correct); wrote %s", sum.Images, *sum.Accuracy, sum.Correct, out)
}
