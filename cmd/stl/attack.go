package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/dataset"
	"github.com/stl-defense/stl/experiment"
	"github.com/stl-defense/stl/internal/cli"
	"github.com/stl-defense/stl/progress"
)

// attackFlags are the options of "stl attack" (shared with stl-beam
// attack).
type attackFlags = cli.AttackFlags

const methodUAP = cli.MethodUAP

func init() { rootCmd.AddCommand(newAttackCmd()) }

// newAttackCmd returns a fresh "attack" command with its own flag values.
func newAttackCmd() *cobra.Command {
	var f attackFlags
	cmd := &cobra.Command{
		Use:   "attack --model DIR --attack " + strings.Join(cli.AttackNames(), "|") + " --out DIR",
		Short: "Compute adversarial examples against a classifier and save them",
		Long: `attack computes adversarial examples of a data set's test images against a
trained classifier (gray-box: on the vanilla classifier, as in the paper's
section 5.1) or, with --defense and --bpda, through a defense (white-box BPDA,
with EOT over randomized defenses, as in the paper's Table 4).

Budgets are the paper's normalized L2 dissimilarity ||x_adv-x0||/||x0||
(--norm l2), the same on the classifier's mean/std-normalized tensors (--norm
l2z, Guo et al.'s measure) or an L-infinity bound (--norm linf). Defaults are
the paper's: FGSM, BIM, DeepFool and CW at dissimilarity 0.04 (use --budget
0.08 for FGSM-0.08), PGD at L-infinity 0.031.

--attack uap fits one universal perturbation (Moosavi-Dezfooli et al. 2017)
on a class-balanced subset of --fit-images training images and adds it to
every attacked image; it is saved beside the set as uap.npy (and uap.json), and
--uap PATH reuses a saved one instead of fitting (scaled to --budget when
given). Its budget defaults to the
average normalized L2 dissimilarity 0.06 of the paper's Table 3.

--target-dissimilarity T searches the attack's strength (the budget; DeepFool's
and CW's overshoot, with their cap lifted) so that the average normalized
L2 dissimilarity on the classifier's normalized tensors over the attacked
images is T (the paper's Table 3: 0.06), within --target-tolerance; the
strength found, the average reached and every probe are saved as search.json.

--protocol reads those budgets as stl run reads its columns (see
docs/attack.md): under release, FGSM at --budget 0.08 and 0.04 is one
L-infinity sign step of 8/255 and 4/255 and BIM at 0.04 L-infinity 4/255 in 5
steps of 1/255 (other normalized L2 budgets of FGSM and BIM are refused: give
them with --norm linf), and every adversarial image is rounded to 8 bits; under
guo a normalized L2 budget is measured on the classifier's mean/std-normalized
tensors. --round8 rounds under any protocol. Both are recorded in meta.json,
and an interrupted run resumes only under the same ones.

The set is written to the --out directory as adv.npy (float32, bit-exact),
labels.npy and meta.json (per-image dissimilarity and L-infinity reached,
predictions, success flags); see the attack package documentation. "stl defend
--in DIR" projects such a set, keeping its labels.

The baselines quilt, tvm-quilt, crop-tvm-quilt (a patch database) and magnet (a
denoising auto-encoder) learn from the data set's clean training images; what
they learn is cached in --baseline-dir and reused by later attacks on the same
training images.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.Check(cmd.Flags().Changed); err != nil {
				return usageError{err}
			}
			return runAttack(cmd.Context(), f, cmd.OutOrStdout(), progress.NewBar(os.Stderr))
		},
	}
	f.Register(cmd.Flags())
	cmd.Flags().Var(shardFlag{&f.Opts.Shard}, "shard", "attack only part i of n (0-based, e.g. 3/8), cut at --batch boundaries, for array jobs; the parts' sets concatenated in order equal one run's (deterministic defenses)")
	return cmd
}

// defenseError makes an unknown --defense a usage error.
func defenseError(err error) error {
	if errors.Is(err, experiment.ErrUnknownDefense) {
		return usagef("--%v", err)
	}
	return err
}

// printLearned says what a baseline learned from clean training images
// (nothing when l is nil).
func printLearned(w io.Writer, l *experiment.Learned) {
	if l != nil {
		fmt.Fprintf(w, "%s: learned from %d training images of %s, cached in %s\n", l.Baseline, l.Images, l.Data, l.Dir)
	}
}

// runAttack runs the attack the flags describe (experiment.AttackJob)
// and prints what it does and its figures to stdout.
func runAttack(ctx context.Context, f attackFlags, stdout io.Writer, bar progress.Reporter) error {
	if f.Opts.Data == "" {
		fmt.Fprintf(stdout, "no --data given: using the embedded sample %s\n", dataset.DefaultSpec)
	}
	job, err := experiment.LoadAttackJob(ctx, f.Opts, bar)
	if err != nil {
		return defenseError(err)
	}
	printLearned(stdout, job.Learned)
	var norm *attack.Normalization
	if f.NeedsNormalization() {
		if norm, err = job.Normalization(); err != nil {
			return err
		}
	}
	if err := f.SetJobAttack(ctx, job, norm, stdout, bar); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s on %d images of %s (%s), model %s, protocol %s\n", job.Name, job.Set.Len(), job.Set.Name, f.Opts.Split, f.Opts.Model, job.ProtocolString())
	res, err := job.Run(ctx, bar)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "success rate %.4f", res.SuccessRate())
	if !f.Opts.Targeted {
		// The rate among the images the (defended) classifier got right
		// before the attack, the ones the attack had to flip.
		fmt.Fprintf(stdout, " (%d of the %d images classified correctly before)", res.Flipped, res.CorrectBefore)
	}
	fmt.Fprintln(stdout)
	if f.Method == methodUAP {
		fmt.Fprintf(stdout, "fooling rate on the attacked images %.4f (prediction changed)\n", res.FoolingRate())
	}
	if f.Opts.BPDA {
		fmt.Fprintf(stdout, "accuracy through %s: clean %.4f, adversarial %.4f\n", job.Defense.Name(), res.CleanAccuracy(res.Labels), res.AdvAccuracy(res.Labels))
	} else {
		fmt.Fprintf(stdout, "accuracy: clean %.4f, adversarial %.4f\n", res.CleanAccuracy(res.Labels), res.AdvAccuracy(res.Labels))
	}
	fmt.Fprintf(stdout, "dissimilarity: mean %.4f max %.4f; L-inf: mean %.4f max %.4f\n",
		meanOf(res.Dissim), maxOf(res.Dissim), meanOf(res.LInf), maxOf(res.LInf))
	if res.DissimZ != nil {
		fmt.Fprintf(stdout, "dissimilarity on the classifier's normalized tensors: mean %.4f max %.4f\n", meanOf(res.DissimZ), maxOf(res.DissimZ))
	}
	if res.GrayBox {
		fmt.Fprintf(stdout, "accuracy through %s (gray-box): clean %.4f, adversarial %.4f\n", job.Defense.Name(), res.DefendedClean, res.DefendedAdv)
	}
	fmt.Fprintf(stdout, "wrote %s (%s, %s, %s)\n", f.Opts.Out, attack.AdvFile, attack.LabelsFile, attack.MetaFile)
	return nil
}

func meanOf(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / math.Max(1, float64(len(v)))
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}
