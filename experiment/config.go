package experiment

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/defense/baseline"
	"github.com/stl-defense/stl/nn"
)

// Attack names, the columns of the paper's Tables 1 and 5 (section 5.1:
// FGSM at normalized L2 dissimilarity 0.08 and 0.04, BIM, DeepFool and CW at
// 0.04).
const (
	AttackFGSM008  = attack.PaperFGSM008
	AttackFGSM004  = attack.PaperFGSM004
	AttackBIM      = attack.PaperBIM
	AttackDeepFool = attack.PaperDeepFool
	AttackCW       = attack.PaperCW
)

// AllAttacks lists the attacks of the paper's tables in column order: the
// gray-box settings of package attack's registry. They are the default
// columns.
var AllAttacks = attack.PaperNames(attack.GrayBox)

// AttackUAP is the universal adversarial perturbation column of the
// paper's Table 3 (Moosavi-Dezfooli et al. 2017; UAPSettings): opt-in,
// listed in Config.Attacks beside the others.
const AttackUAP = "UAP"

// KnownAttacks lists every column Config.Attacks may name, in column
// order: AllAttacks, then AttackUAP.
var KnownAttacks = append(append([]string(nil), AllAttacks...), AttackUAP)

// Losses of the white-box PGD (Config.WhiteBoxLosses), the names of
// package attack's losses.
const (
	// LossCE is the cross-entropy: the Table 4 attack the sanity checks
	// build on.
	LossCE = string(attack.LossCE)
	// LossCW is the Carlini-Wagner margin loss f6 (attack.LossCW).
	LossCW = string(attack.LossCW)
)

// AllWhiteBoxLosses lists the white-box losses in the column order of the
// Table 4 form.
var AllWhiteBoxLosses = []string{LossCE, LossCW}

// Config is the configuration of an experiment run. Every field has a
// documented default (DefaultConfig) chosen so that a run on the shipped
// CIFAR-10 sample finishes within about 15 minutes on a 2-core machine; the
// paper's settings are noted where they differ. Config is loaded from YAML
// or JSON (LoadConfig) with the field names of the tags below.
type Config struct {
	// Name names the run; the command line's default output directory is
	// runs/<Name>. Default "cifar10-sample".
	Name string `json:"name" yaml:"name"`
	// Data is the data set: "sample:cifar10" (default), "sample:imagenet10",
	// or a path that dataset.LoadContext accepts.
	Data string `json:"data" yaml:"data"`
	// Resolution is the image side in pixels for image folders and record
	// folders holding several resolutions; 0 (default) keeps the data's own.
	Resolution int `json:"resolution" yaml:"resolution"`
	// Arch is the classifier: "vgg-small" (default) or "resnet-20".
	Arch string `json:"arch" yaml:"arch"`
	// Seed seeds every random choice of the run: weight initialization,
	// shuffling, k-means, dictionary initialization, the attack subset.
	// Default 1.
	Seed int64 `json:"seed" yaml:"seed"`
	// Limit caps the number of training images (a class-balanced seeded
	// subset); 0 uses all. Default 0.
	Limit int `json:"limit" yaml:"limit"`
	// TestLimit caps the number of clean test images (class-balanced,
	// seeded); 0 uses all. Default 0.
	TestLimit int `json:"test_limit" yaml:"test_limit"`

	// Epochs is the number of training epochs of the vanilla classifier.
	// Default 15 on the sample; the paper trains VGG-16 to convergence.
	Epochs int `json:"epochs" yaml:"epochs"`
	// RetrainEpochs is the number of epochs of the classifiers retrained on
	// projected images (section 3.5); 0 means Epochs. Default 0.
	RetrainEpochs int `json:"retrain_epochs" yaml:"retrain_epochs"`
	// BatchSize is the training mini-batch size. Default 64.
	BatchSize int `json:"batch_size" yaml:"batch_size"`
	// LearningRate is the initial learning rate. Default 0.05 (SGD with
	// momentum, cosine schedule).
	LearningRate float64 `json:"learning_rate" yaml:"learning_rate"`
	// Cutout, when positive, zeroes a random Cutout x Cutout square of each
	// training image (DeVries and Taylor 2017; nn.TrainOptions.Cutout) in
	// every classifier the run trains. Default 0 (none).
	Cutout int `json:"cutout" yaml:"cutout"`
	// Dropout is the dropout probability before the dense layers of
	// vgg-small (nn.ClassifierConfig.Dropout) in every classifier the run
	// trains; resnet-20 has no dropout layers. Default 0 (none).
	Dropout float64 `json:"dropout" yaml:"dropout"`
	// VanillaModel, when not empty, is a classifier the run loads as the
	// vanilla one instead of training it: a model directory written by
	// `stl train classifier` (model.safetensors and model.json), or any
	// other classifier LoadModel reads (an ONNX file, PyTorch weights as
	// ARCH[@SIZE]:FILE.safetensors). Its input size and classes must match
	// the run's data (after Resolution); the SHA-256 of its files enters
	// the vanilla stage's cache key, so a replaced model recomputes
	// everything that depends on it. Epochs then serves only as the
	// default of RetrainEpochs. The run retrains classifiers on the
	// defenses' images only in front of a model directory: in front of
	// another classifier, whose architecture the run does not train, the
	// defenses' Table 1 rows stay empty and RetrainBaselines and AdvTrain
	// are refused. Default "" (train).
	VanillaModel string `json:"vanilla_model" yaml:"vanilla_model"`

	// STLSettings are the settings of the STL defense the run builds
	// (lambda, filters, filter_size, clusters, dict_images,
	// dict_iterations, dae_epochs), at the top level of the file.
	STLSettings `yaml:",inline"`

	// Attacks lists the attacks to run, by name: some of KnownAttacks.
	// Default AllAttacks (without "UAP", the universal perturbation of
	// Table 3, which a run adds by listing it).
	Attacks []string `json:"attacks" yaml:"attacks"`
	// UAP configures the "UAP" column (UAPSettings). Zero: the defaults
	// stated there.
	UAP UAPSettings `json:"uap,omitzero" yaml:"uap,omitempty"`
	// TargetDissimilarity, when positive, sets every attack column's
	// strength so that the average normalized L2 dissimilarity over the
	// attacked images, measured on the vanilla classifier's
	// mean/std-normalized tensors (Guo et al.'s measure), is this value:
	// the budgets of the paper's Table 3 (0.06), found by a search per
	// column (attack.SearchStrength: the budget of FGSM and BIM,
	// DeepFool's and CW's overshoot with their cap lifted, the scale
	// of the fitted universal perturbation), each column's strength and
	// reached average recorded in the report. The columns keep their names
	// (FGSM-0.08 and FGSM-0.04 then coincide). A column that cannot reach
	// it is missing with the reason. Default 0 (off): every cache key as
	// before the setting existed; set, it enters the attack stages' keys.
	TargetDissimilarity float64 `json:"target_dissimilarity,omitempty" yaml:"target_dissimilarity"`
	// TargetTolerance is how far from TargetDissimilarity a column's
	// average may end. Default 0: 1% of it.
	TargetTolerance float64 `json:"target_tolerance,omitempty" yaml:"target_tolerance"`
	// Protocol names how the attack columns are turned into attacks
	// (attack.Protocol): "text" (the paper's text: normalized L2
	// dissimilarity on [0,1] pixels), "release" (as the authors' released
	// images show: L-infinity sign steps of 8/255 and 4/255 for FGSM, BIM
	// at 4/255, DeepFool and CW at normalized L2 0.04, every adversarial
	// image rounded to 8 bits), "guo" (as Guo et al.'s code measures it:
	// the text's budgets as the normalized L2 dissimilarity on the vanilla
	// classifier's mean/std-normalized tensors). Default "" (text): left
	// empty, every cache
	// key reads as before the setting existed; another protocol changes
	// the keys of the attack stages (and of what depends on their images)
	// only.
	Protocol string `json:"protocol,omitempty" yaml:"protocol"`
	// Round8 rounds every adversarial image of the attack columns and of
	// the white-box table to 8 bits, values k/255, inside its attack's
	// budget (attack.Round8Within), before any defense or classifier sees
	// it, as an image file would store it, under any protocol ("release"
	// always does). Default false.
	Round8 bool `json:"round8,omitempty" yaml:"round8"`
	// CWIterations and CWBinarySteps are the Adam steps per binary-search
	// step and the binary-search steps of the CW attack. Defaults 100 and 5
	// (Carlini and Wagner use 10000 and 9; package attack defaults to 1000
	// and 9), to bound the attack's cost.
	CWIterations  int `json:"cw_iterations" yaml:"cw_iterations"`
	CWBinarySteps int `json:"cw_binary_steps" yaml:"cw_binary_steps"`
	// AttackSubset is the number of test images attacked, a class-balanced
	// seeded subset of the test set; 0 attacks every test image. Default
	// 100 (10 per CIFAR-10 class): DeepFool and CW cost about a second per
	// image on 2 cores.
	AttackSubset int `json:"attack_subset" yaml:"attack_subset"`
	// Baselines lists the baseline defenses to evaluate next to STL, by
	// name; ["all"] (default) takes DefaultBaselines (one of each family
	// of the paper's tables; "crop-tvm-quilt" and "d3" must be named), []
	// none.
	Baselines []string `json:"baselines" yaml:"baselines"`
	// RetrainBaselines retrains a classifier on each baseline's transformed
	// training set for the Table 1 form, as the paper does; without it the
	// baselines appear in the Table 5 form only. Default false, to keep the
	// default run within its time budget.
	RetrainBaselines bool `json:"retrain_baselines" yaml:"retrain_baselines"`
	// LambdaSweep lists the sparsity weights of the Figure 5 study: STL
	// (cluster) projects the attacked test images and their FGSM-0.08
	// versions with each lambda (the dictionaries stay those learned at
	// Lambda), and the vanilla classifier is evaluated on both. Default
	// [0.05, 0.1, 0.2, 0.3, 0.5] (the paper's range); [] skips the study.
	LambdaSweep []float64 `json:"lambda_sweep" yaml:"lambda_sweep"`
	// WhiteBox adds the white-box evaluation of the paper's Table 4: PGD at
	// L-infinity 0.031 through BPDA (the defense's backward pass taken as
	// the identity, or its exact gradient where it provides one: MagNet)
	// against each defense in front of its retrained
	// classifier (the vanilla one for baselines not retrained), with EOT
	// over EOTDraws draws for randomized defenses. Default false: it costs
	// WhiteBoxSteps projections per attacked image and defense.
	WhiteBox      bool `json:"whitebox" yaml:"whitebox"`
	WhiteBoxSteps int  `json:"whitebox_steps" yaml:"whitebox_steps"`
	EOTDraws      int  `json:"eot_draws" yaml:"eot_draws"`
	// WhiteBoxLosses lists the losses the white-box PGD ascends, one
	// column of the Table 4 form each: "ce",
	// the cross-entropy, and "cw", the Carlini-Wagner margin loss
	// max_{j!=y} z_j - z_y capped at WhiteBoxCWKappa (f6, attack.LossCW),
	// whose gradient does not vanish where the softmax saturates. Default
	// ["ce", "cw"]; "ce" must be listed, since the sanity checks and the
	// transfer control are built on the cross-entropy attack. The "ce"
	// stages keep the names and keys they had before the setting existed,
	// so a run made before it reuses them and computes only the "cw" ones
	// (each costs as much as its "ce" stage).
	WhiteBoxLosses []string `json:"whitebox_losses,omitempty" yaml:"whitebox_losses"`
	// WhiteBoxCWKappa is the confidence kappa of the CW loss: the margin
	// is ascended until the image is misclassified by kappa logits, then
	// the image stops moving (kappa 0 is f6 as Carlini and Wagner use it
	// for minimal perturbations). Default 10: with a randomized defense an
	// image that stops as soon as the EOT draws misclassify it is often
	// classified correctly by the evaluation's fresh draw. On the full
	// CIFAR-10 run (100 white-box images, 2 EOT draws) kappa 10 instead of
	// 0 took quilting from 0.43 to 0.32 and pixel deflection from 0.06 to
	// 0.00 (the cross-entropy: 0.34 and 0.03) and left the deterministic
	// rows unchanged. It enters the keys of the CW stages only.
	WhiteBoxCWKappa float64 `json:"whitebox_cw_kappa" yaml:"whitebox_cw_kappa"`
	// WhiteBoxSubset, when positive, restricts the white-box table and its
	// sanity checks to a class-balanced subset of this many of the attacked
	// images (seeded by Seed), to bound their cost on a large run: the
	// sanity checks cost about 6 times the Table 4 attack again on each row
	// they cover. 0 (default), or a number at least the count of attacked
	// images, uses them all, with the cache keys of runs made before the
	// setting existed. Needs WhiteBox.
	WhiteBoxSubset int `json:"whitebox_subset,omitempty" yaml:"whitebox_subset"`
	// SanityBaselines also runs the white-box sanity checks (sanity.go) on
	// every baseline of the run, each attacked as in the white-box table
	// (BPDA with the baseline's exact backward pass where it has one, the
	// identity otherwise; EOT over EOTDraws draws for randomized ones).
	// Default false: No Defense, STL and STL (cluster) only, since each
	// baseline row costs about 6 times its Table 4 attack again (with EOT,
	// EOTDraws transforms per gradient). Needs WhiteBox.
	SanityBaselines bool `json:"sanity_baselines,omitempty" yaml:"sanity_baselines"`
	// GridImages is the number of examples in the image grid. Default 8.
	GridImages int `json:"grid_images" yaml:"grid_images"`
	// AdvTrain adds adversarially trained defenders to the white-box
	// table (AdvTrainSettings). Default: none (Method ""), which leaves
	// every stage and cache key as before the setting existed. Needs
	// WhiteBox.
	AdvTrain AdvTrainSettings `json:"adv_train,omitzero" yaml:"adv_train,omitempty"`
	// WhiteBoxSuite adds the adaptive evaluation suite of `stl evaluate`
	// (package experiment/evaluate) on every row of the white-box table
	// (WhiteBoxSuiteSettings). Default: none (no attacks), which leaves
	// every stage and cache key as before the setting existed. Needs
	// WhiteBox.
	WhiteBoxSuite WhiteBoxSuiteSettings `json:"whitebox_suite,omitzero" yaml:"whitebox_suite,omitempty"`
}

// STLSettings are the settings of the STL defense that a run takes from
// its configuration. With Config.Seed they make up DefenseSpec; the other
// options of package defense keep their defaults (defense.TrainOptions).
type STLSettings struct {
	// Lambda is the sparsity weight of CBPDN (paper section 5.1: 0.2).
	Lambda float64 `json:"lambda" yaml:"lambda"`
	// Filters is the number of dictionary filters (paper: 64).
	Filters int `json:"filters" yaml:"filters"`
	// FilterSize is the side of each filter in pixels (paper: 8).
	FilterSize int `json:"filter_size" yaml:"filter_size"`
	// Clusters is the number of latent-space clusters of the stratified STL
	// (paper: 4 for CIFAR-10 and ImageNet-10, 10 for ImageNet).
	Clusters int `json:"clusters" yaml:"clusters"`
	// DictImages is the number of training images the dictionaries are
	// learned on (convolutional dictionary learning is the costly step);
	// 0 uses every training image. Default 64 (package defense: 256).
	DictImages int `json:"dict_images" yaml:"dict_images"`
	// DictIterations is the number of dictionary-learning iterations.
	// Default 30 (package defense: 100).
	DictIterations int `json:"dict_iterations" yaml:"dict_iterations"`
	// DAEEpochs is the number of training epochs of the denoising
	// auto-encoder whose latent codes are clustered. Default 5 (package
	// defense: 10).
	DAEEpochs int `json:"dae_epochs" yaml:"dae_epochs"`
	// ApplyOptions are the STL's output mapping and STL (cluster)'s cluster
	// assignment (output_mapping, quantize_8bit, cluster_assignment; see
	// package defense). The zero value, this project's behaviour (clip to
	// [0, 1], kNN vote), is omitted from the JSON and so from the cache
	// keys; defense.ReleaseApplyOptions are the released code's choices
	// (`stl run --official`).
	defense.ApplyOptions `yaml:",inline"`
}

// DefaultConfig returns the configuration of `stl run` with no flags: the
// shipped CIFAR-10 sample, vgg-small, the paper's STL settings (64 filters of
// 8x8, lambda 0.2, 4 clusters) and training budgets that fit 15 minutes on a
// 2-core machine.
func DefaultConfig() Config {
	return Config{
		Name:         "cifar10-sample",
		Data:         "sample:cifar10",
		Arch:         nn.ArchVGGSmall,
		Seed:         1,
		Epochs:       15,
		BatchSize:    64,
		LearningRate: 0.05,
		STLSettings: STLSettings{
			Lambda:         0.2,
			Filters:        64,
			FilterSize:     8,
			Clusters:       4,
			DictImages:     64,
			DictIterations: 30,
			DAEEpochs:      5,
		},
		Attacks:         append([]string(nil), AllAttacks...),
		CWIterations:    100,
		CWBinarySteps:   5,
		AttackSubset:    100,
		Baselines:       []string{"all"},
		LambdaSweep:     []float64{0.05, 0.1, 0.2, 0.3, 0.5},
		WhiteBoxSteps:   20,
		EOTDraws:        10,
		WhiteBoxLosses:  append([]string(nil), AllWhiteBoxLosses...),
		WhiteBoxCWKappa: 10,
		GridImages:      8,
	}
}

// ConfigError reports an invalid configuration field.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("config: %s: %s", e.Field, e.Msg) }

var runName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Archs lists the classifier architectures a run accepts: package nn's.
var Archs = nn.ClassifierArchNames()

// Validate checks every field and returns a *ConfigError for the first bad
// one.
func (c Config) Validate() error {
	bad := func(field, format string, a ...any) error {
		return &ConfigError{field, fmt.Sprintf(format, a...)}
	}
	switch {
	case !runName.MatchString(c.Name):
		return bad("name", "%q: want letters, digits, '.', '_' or '-'", c.Name)
	case c.Data == "":
		return bad("data", "empty")
	case c.Resolution < 0 || c.Resolution > 4096:
		return bad("resolution", "%d, want 0 (native) or 1..4096", c.Resolution)
	case !contains(Archs, c.Arch):
		return bad("arch", "%q, want one of %s", c.Arch, strings.Join(Archs, ", "))
	case c.Limit < 0:
		return bad("limit", "%d < 0", c.Limit)
	case c.TestLimit < 0:
		return bad("test_limit", "%d < 0", c.TestLimit)
	case c.Epochs < 1:
		return bad("epochs", "%d, want >= 1", c.Epochs)
	case c.RetrainEpochs < 0:
		return bad("retrain_epochs", "%d < 0", c.RetrainEpochs)
	case c.BatchSize < 1:
		return bad("batch_size", "%d, want >= 1", c.BatchSize)
	case !(c.LearningRate > 0 && c.LearningRate < 10):
		return bad("learning_rate", "%v, want in (0, 10)", c.LearningRate)
	case c.Cutout < 0:
		return bad("cutout", "%d < 0", c.Cutout)
	case !(c.Dropout >= 0 && c.Dropout < 1):
		return bad("dropout", "%v, want in [0, 1)", c.Dropout)
	case c.Dropout > 0 && !hasDropout(c.Arch):
		return bad("dropout", "%v: only %s has dropout layers, %s has none", c.Dropout, strings.Join(dropoutArchs(), ", "), c.Arch)
	case !(c.Lambda > 0 && c.Lambda < 100):
		return bad("lambda", "%v, want > 0", c.Lambda)
	case c.Filters < 1:
		return bad("filters", "%d, want >= 1", c.Filters)
	case c.FilterSize < 1:
		return bad("filter_size", "%d, want >= 1", c.FilterSize)
	case c.Clusters < 1:
		return bad("clusters", "%d, want >= 1", c.Clusters)
	case c.ApplyOptions.Validate() != nil:
		return bad("output_mapping / cluster_assignment", "%v", c.ApplyOptions.Validate())
	case c.DictImages < 0:
		return bad("dict_images", "%d < 0", c.DictImages)
	case c.DictIterations < 1:
		return bad("dict_iterations", "%d, want >= 1", c.DictIterations)
	case c.DAEEpochs < 1:
		return bad("dae_epochs", "%d, want >= 1", c.DAEEpochs)
	case c.CWIterations < 1:
		return bad("cw_iterations", "%d, want >= 1", c.CWIterations)
	case c.CWBinarySteps < 1:
		return bad("cw_binary_steps", "%d, want >= 1", c.CWBinarySteps)
	case c.AttackSubset < 0:
		return bad("attack_subset", "%d < 0", c.AttackSubset)
	case c.WhiteBoxSteps < 1:
		return bad("whitebox_steps", "%d, want >= 1", c.WhiteBoxSteps)
	case c.EOTDraws < 1:
		return bad("eot_draws", "%d, want >= 1", c.EOTDraws)
	case c.WhiteBoxSubset < 0:
		return bad("whitebox_subset", "%d < 0", c.WhiteBoxSubset)
	case c.WhiteBoxSubset > 0 && c.AttackSubset > 0 && c.WhiteBoxSubset > c.AttackSubset:
		return bad("whitebox_subset", "%d, more than the %d attacked images (attack_subset)", c.WhiteBoxSubset, c.AttackSubset)
	case c.WhiteBoxSubset > 0 && !c.WhiteBox:
		return bad("whitebox_subset", "%d without whitebox: the subset serves only the white-box evaluation", c.WhiteBoxSubset)
	case !(c.WhiteBoxCWKappa >= 0 && c.WhiteBoxCWKappa <= 1e6):
		return bad("whitebox_cw_kappa", "%v, want in [0, 1e6]", c.WhiteBoxCWKappa)
	case c.SanityBaselines && !c.WhiteBox:
		return bad("sanity_baselines", "true without whitebox: the sanity checks are part of the white-box evaluation")
	case c.GridImages < 0:
		return bad("grid_images", "%d < 0", c.GridImages)
	}
	if err := c.AdvTrain.validate(c); err != nil {
		return err
	}
	if err := c.WhiteBoxSuite.validate(c); err != nil {
		return err
	}
	// checkNames rejects names not in all and names listed twice, and
	// returns the names seen.
	checkNames := func(field string, names, all []string, what string) (map[string]bool, error) {
		seen := map[string]bool{}
		for _, n := range names {
			if !contains(all, n) {
				return nil, bad(field, "unknown %s %q, want some of %s", what, n, strings.Join(all, ", "))
			}
			if seen[n] {
				return nil, bad(field, "%q listed twice", n)
			}
			seen[n] = true
		}
		return seen, nil
	}
	if _, err := checkNames("attacks", c.Attacks, KnownAttacks, "attack"); err != nil {
		return err
	}
	if err := c.UAP.validate(); err != nil {
		return err
	}
	if c.TargetDissimilarity != 0 || c.TargetTolerance != 0 {
		if err := c.searchOptions().Validate(); err != nil {
			return bad("target_dissimilarity", "%v (target_tolerance %v)", c.TargetDissimilarity, c.TargetTolerance)
		}
	}
	if _, err := attack.ParseProtocol(c.Protocol); err != nil {
		return bad("protocol", "%q, want one of %s", c.Protocol, strings.Join(attack.ProtocolNames(), ", "))
	}
	if cols := c.roundedLInfSearches(); len(cols) > 0 {
		return bad("target_dissimilarity", "%v searches the L-infinity budget of %s, and with 8-bit rounding (protocol %s, or round8) "+
			"their pixels move by whole levels of 1/255 (at +-eps they all round alike), so the average dissimilarity jumps from level to level "+
			"and the search cannot meet it: search under protocol %s or %s (normalized L2 budgets, with round8 for 8-bit images), "+
			"or list only attacks with an L2 budget (%s)",
			c.TargetDissimilarity, strings.Join(cols, ", "), c.protocol(), attack.ProtocolText, attack.ProtocolGuo, strings.Join(c.l2Columns(), ", "))
	}
	seen, err := checkNames("whitebox_losses", c.WhiteBoxLosses, AllWhiteBoxLosses, "loss")
	if err != nil {
		return err
	}
	if !seen[LossCE] {
		return bad("whitebox_losses", "%v without %q: the white-box sanity checks and the transfer control use the cross-entropy attack", c.WhiteBoxLosses, LossCE)
	}
	for _, l := range c.LambdaSweep {
		if !(l > 0 && l < 100) {
			return bad("lambda_sweep", "%v, want values > 0", l)
		}
	}
	known := baseline.Names()
	for _, b := range c.Baselines {
		if b == "all" && len(c.Baselines) == 1 {
			continue
		}
		if !contains(known, b) {
			return bad("baselines", "unknown baseline %q, want \"all\" or some of %s", b, strings.Join(known, ", "))
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// protocol returns the run's attack protocol (Validate has checked it).
func (c Config) protocol() attack.Protocol {
	p, _ := attack.ParseProtocol(c.Protocol)
	return p
}

// round8 reports whether the adversarial images of the attack columns are
// rounded to 8 bits: Round8, or a protocol that rounds.
func (c Config) round8() bool { return c.Round8 || c.protocol().Round8() }

// roundedLInfSearches returns the attack columns whose strength search
// (TargetDissimilarity) would move an L-infinity budget on images rounded
// to 8 bits: none without a search or without rounding. Such a search
// cannot converge (stl attack refuses it too); the universal perturbation
// is not among them (its pixels move by different amounts).
func (c Config) roundedLInfSearches() []string {
	if c.TargetDissimilarity <= 0 || !c.round8() {
		return nil
	}
	var cols []string
	for _, name := range orderedAttacks(c.Attacks) {
		if s, err := c.protocol().Setting(name); err == nil && s.Budget.Norm == attack.LInf && s.Knob().Param == attack.BudgetKnob().Param {
			cols = append(cols, name)
		}
	}
	return cols
}

// l2Columns returns the paper's attack columns with a normalized L2 budget
// under the run's protocol.
func (c Config) l2Columns() []string {
	var cols []string
	for _, name := range KnownAttacks {
		if s, err := c.protocol().Setting(name); err == nil && s.Budget.Norm != attack.LInf {
			cols = append(cols, name)
		}
	}
	return cols
}

// retrainEpochs returns RetrainEpochs, or Epochs when it is 0.
func (c Config) retrainEpochs() int {
	if c.RetrainEpochs > 0 {
		return c.RetrainEpochs
	}
	return c.Epochs
}
