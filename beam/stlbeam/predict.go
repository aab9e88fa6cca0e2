package stlbeam

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/internal/safefile"
)

// PredictOptions configures Predict. Model, Input, Defense, Universal,
// Batch and Threads are those of `stl predict` (--model, --in or --data
// with --split and --limit, --defense, --universal, --batch, --threads).
type PredictOptions struct {
	Model     string
	Input     experiment.PredictInput
	Defense   string
	Universal bool
	// Batch is the number of images classified at a time; default 64, as
	// `stl predict`'s. Shards are cut at batch boundaries, so that every
	// image is classified (and defended) in the batch an unsharded run
	// puts it in.
	Batch   int
	Threads int
	// Out is the merged output: the lines `stl predict --json` prints, one
	// JSON object per image, then the summary object.
	Out string
	// Sharding: the parts the images are cut into, at batch boundaries,
	// at most one per batch; each part is a .jsonl file.
	Sharding
}

// Predict adds to s the classification `stl predict --json` runs, over
// the images cut into o.Shards parts at batch boundaries, spread over the
// runner's workers by a reshuffle, each worker loading the classifier, the
// defense and the images once and classifying its shards with
// experiment.Predict; then the merge of the shards' lines, in order, into
// o.Out, with the summary recomputed over all images: what `stl predict
// --json` prints, byte for byte, for a deterministic defense. It returns
// the PCollection holding o.Out once it is written.
func Predict(s beam.Scope, o PredictOptions) (beam.PCollection, error) {
	o = o.withDefaults()
	return shardPipeline(s.Scope("stl.Predict"), o.Validate(), o.Sharding, &predictShardFn{Opts: o}, &mergeFn{Out: o.Out, Kind: mergePredictions})
}

// Validate checks the options as `stl predict` checks its flags.
func (o PredictOptions) Validate() error {
	in := o.Input
	switch {
	case o.Model == "" || o.Out == "":
		return fmt.Errorf("stlbeam: Model and Out are required")
	case in.In != "" && in.Data != "":
		return fmt.Errorf("stlbeam: Input.In and Input.Data exclude each other")
	case in.Split != "" && in.Split != "test" && in.Split != "train":
		return fmt.Errorf("stlbeam: Input.Split %q: want test or train", in.Split)
	case in.In != "" && in.Split == "train":
		return fmt.Errorf("stlbeam: Input.Split applies to Input.Data only")
	case in.Limit < 0 || o.Threads < 0:
		return fmt.Errorf("stlbeam: Input.Limit %d and Threads %d must be >= 0", in.Limit, o.Threads)
	case o.Batch < 1:
		return fmt.Errorf("stlbeam: Batch %d must be at least 1", o.Batch)
	case o.Universal && o.Defense == "":
		return fmt.Errorf("stlbeam: Universal needs a Defense")
	}
	return o.Sharding.validate()
}

func (o PredictOptions) withDefaults() PredictOptions {
	if o.Batch == 0 {
		o.Batch = 64
	}
	if o.Input.Split == "" {
		o.Input.Split = "test"
	}
	o.Sharding = o.Sharding.withDefaults(o.Out)
	return o
}

// predictShardFn classifies one shard per element. Opts is the DoFn's
// serialized configuration.
type predictShardFn struct {
	Opts PredictOptions

	key string
}

// Setup computes the key of the job's inputs: the files of the
// classifier, the defense directory and the input (names, sizes and
// modification times) and the options.
func (f *predictShardFn) Setup() error {
	var err error
	f.key, err = setupParts(f.Opts, f.Opts.PartsDir, f.Opts.Model, f.Opts.Defense, f.Opts.Input.In)
	return err
}

// predictState is what a worker loads once: the classifier, the defense
// in front of it and the images.
type predictState struct {
	m       attack.Model
	t       defense.Transform
	src     *experiment.ImageSource // each shard reads its images only, where the form allows
	labeled bool
}

// loadPredict loads what the classification under o needs, as stl
// predict does.
func loadPredict(ctx context.Context, o PredictOptions) (*predictState, error) {
	m, err := experiment.LoadModel(o.Model, o.Threads)
	if err != nil {
		return nil, err
	}
	st := &predictState{m: m}
	c, h, w := m.InputShape()
	if o.Defense != "" {
		t, err := experiment.LoadTransform(o.Defense, o.Universal)
		if err != nil {
			return nil, err
		}
		if err := t.CheckShape(c, h, w); err != nil {
			return nil, fmt.Errorf("model %s: %w", o.Model, err)
		}
		st.t = t.Transform
	}
	if st.src, st.labeled, err = experiment.OpenPredictInput(ctx, o.Input, dataset.Shape{C: c, H: h, W: w}, nil); err != nil {
		return nil, err
	}
	return st, nil
}

// ProcessElement classifies shard i into its part, the JSON lines of its
// images (indexed in the whole input) then its summary, unless a finished
// part is there, and emits the part's path.
func (f *predictShardFn) ProcessElement(ctx context.Context, i int, emit func(string)) error {
	o := f.Opts
	out := partPath(o.PartsDir, i, o.Shards, ".jsonl")
	load := func(ctx context.Context) (*predictState, error) { return loadPredict(ctx, o) }
	return runShard(ctx, out, f.key, func(ctx context.Context) error {
		return withWorker(ctx, o.Workers, o, load, func(st *predictState) error {
			return st.predict(ctx, o, i, out)
		})
	}, emit)
}

// predict classifies shard i of the images under o and writes its part to
// out.
func (st *predictState) predict(ctx context.Context, o PredictOptions, i int, out string) error {
	n := st.src.Len()
	lo, hi := (dataset.Shard{Index: i, Count: o.Shards}).BatchRange(n, o.Batch)
	if hi <= lo {
		return noBatch(i, o.Shards, n, o.Batch)
	}
	part, err := st.src.Read(ctx, lo, hi)
	if err != nil {
		return fmt.Errorf("images %d to %d: %w", lo, hi-1, err)
	}
	var labels []int
	if st.labeled {
		labels = part.Labels
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	sum, err := experiment.Predict(ctx, st.m, st.t, part.Images, labels, o.Batch, func(p experiment.Prediction) error {
		p.Index += lo
		return enc.Encode(p)
	}, nil)
	if err != nil {
		return fmt.Errorf("images %d to %d: %w", lo, hi-1, err)
	}
	if err := enc.Encode(sum); err != nil {
		return err
	}
	return safefile.WriteBytes(out, buf.Bytes())
}

// mergePredictionParts writes to out the prediction lines of parts, in
// order, then their summary totalled over all of them, as `stl predict
// --json` prints it; each part ends with its own summary line. It returns
// the summary.
func mergePredictionParts(out string, parts []string) (experiment.PredictSummary, error) {
	var total experiment.PredictSummary
	var buf bytes.Buffer
	labeled := true
	for k, p := range parts {
		body, sum, err := readPredictions(p)
		if err != nil {
			return total, err
		}
		if lines := bytes.Count(body, []byte("\n")); lines != sum.Images {
			return total, fmt.Errorf("%s: %d prediction lines, its summary counts %d images", p, lines, sum.Images)
		}
		if k > 0 && sum.Defense != total.Defense {
			return total, fmt.Errorf("%s: defense %q, %s has %q", p, sum.Defense, parts[0], total.Defense)
		}
		total.Images += sum.Images
		total.Correct += sum.Correct
		total.Defense = sum.Defense
		labeled = labeled && sum.Accuracy != nil
		buf.Write(body)
	}
	if labeled && total.Images > 0 {
		acc := float64(total.Correct) / float64(total.Images)
		total.Accuracy = &acc
	}
	if err := json.NewEncoder(&buf).Encode(total); err != nil {
		return total, err
	}
	return total, safefile.WriteBytes(out, buf.Bytes())
}

// readPredictions reads a file of prediction lines ending with their
// summary, as Predict and its parts write them: the lines before the
// summary, and the summary.
func readPredictions(path string) (body []byte, sum experiment.PredictSummary, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, sum, err
	}
	t := bytes.TrimSuffix(b, []byte("\n"))
	if len(t) == len(b) || len(t) == 0 {
		return nil, sum, fmt.Errorf("%s: no summary line", path)
	}
	i := bytes.LastIndexByte(t, '\n')
	if err := json.Unmarshal(t[i+1:], &sum); err != nil {
		return nil, sum, fmt.Errorf("%s: summary: %w", path, err)
	}
	return b[:i+1], sum, nil
}

func init() {
	register.DoFn3x1[context.Context, int, func(string), error](&predictShardFn{})
}

// ReadPredictSummary reads the summary, the last line, of the predictions
// file out written by Predict.
func ReadPredictSummary(out string) (experiment.PredictSummary, error) {
	_, sum, err := readPredictions(out)
	return sum, err
}
