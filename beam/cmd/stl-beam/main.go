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
// stl-beam run takes the flags of stl run and runs the same run (same
// stages, keys, results.json and report), its attack columns and the
// defenses' transforms of image sets each a pipeline of shards
// (stlbeam.Executor):
//
//	stl-beam run --limit 200 --test-limit 50 --epochs 1 --out runs/small --shards 4 --workers 2
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
	"path/filepath"
	"strings"
	"syscall"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/beam/stlbeam"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/experiment/report"
	"github.com/stl-defense/stl/internal/cli"
	"github.com/stl-defense/stl/progress"
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
  stl-beam run     (the flags of stl run): the attacks and transforms of each stage as a pipeline
each with [--shards N] [--workers N] [--parts DIR] (not run) and Beam's flags [--runner=prism|flink|spark|dataflow ...];
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
	if len(os.Args) < 2 || commands[os.Args[1]] == nil && os.Args[1] != "run" {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(exitUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if os.Args[1] == "run" {
		os.Exit(runRun(ctx, os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(ctx, os.Args[1], os.Args[2:], os.Stdout, os.Stderr))
}

// run parses the arguments of the subcommand name and runs its pipeline.
func run(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs, sh := flagSet(name, stderr)
	fs.StringVar(&sh.PartsDir, "parts", "", "directory of the shards' outputs (default: OUT.parts); a re-run skips finished shards")
	build := commands[name](fs)
	if code := parse(fs, name, args, stderr); code >= 0 {
		return code
	}
	p, s := beam.NewPipelineWithRoot()
	done, err := build(s, *sh)
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

// flagSet returns Beam's flag set (flag.CommandLine) made the command
// name's, with the flags every command has (--shards, --workers).
func flagSet(name string, stderr io.Writer) (*flag.FlagSet, *stlbeam.Sharding) {
	fs := flag.CommandLine
	fs.Init("stl-beam "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	sh := &stlbeam.Sharding{}
	fs.IntVar(&sh.Shards, "shards", 8, "parts the images are cut into (the pipeline's elements)")
	fs.IntVar(&sh.Workers, "workers", 1, "shards one worker process computes at once, each worker loading the job's model, defense and images once")
	return fs, sh
}

// parse parses args and initializes Beam; it returns the exit code when
// the command must stop (0 for --help), -1 to go on.
func parse(fs *flag.FlagSet, name string, args []string, stderr io.Writer) int {
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
	return -1
}

// runRun runs `stl run` with the flags of stl run, its heavy stages on
// the Beam runner (stlbeam.Executor), and prints what stl run prints.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, sh := flagSet("run", stderr)
	var rf cli.RunFlags
	rf.Register(fs, cli.StringsVar(fs))
	if code := parse(fs, "run", args, stderr); code >= 0 {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg, err := rf.Resolve(func(name string) bool { return set[name] })
	if err != nil {
		fmt.Fprintln(stderr, "stl-beam run:", err)
		return exitUsage
	}
	dir := rf.RunDir(cfg)
	b := experiment.DefaultBackend()
	ex := &stlbeam.Executor{Sharding: *sh}
	b.Executor = ex
	res, err := experiment.RunWith(ctx, cfg, b, dir, progress.NewBar(stderr))
	if err != nil {
		fmt.Fprintln(stderr, "stl-beam run:", err)
		if ctx.Err() != nil {
			return exitCancelled
		}
		return exitFail
	}
	if err := report.WriteText(stdout, res); err != nil {
		fmt.Fprintln(stderr, "stl-beam run:", err)
		return exitFail
	}
	stages, computed, skipped := ex.Counts()
	fmt.Fprintf(stdout, "\n%d stages on the Beam runner: %d shards computed, %d found finished and skipped\n", stages, computed, skipped)
	fmt.Fprintf(stdout, "Report: %s\n", filepath.Join(dir, report.FileHTML))
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

// attackSummary describes the merged adversarial set in dir from its
// metadata and labels (attack.OpenSet: the images are not read).
func attackSummary(dir string) string {
	s, err := attack.OpenSet(dir)
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
