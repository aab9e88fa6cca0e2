package experiment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/progress"
	"github.com/stl-defense/stl/tensor"
)

// Files a universal perturbation is saved in, beside the adversarial set
// it made (in AttackOptions.Out): the perturbation v, float32 (1, C, H, W),
// added to every image and clipped, and UAPInfo, what it was fitted on.
const (
	UAPFile     = "uap.npy"
	UAPInfoFile = "uap.json"
)

// UAPJobOptions configures AttackJob.FitUniversal.
type UAPJobOptions struct {
	// FitImages is the number of training images of the data set the
	// perturbation is fitted on, a class-balanced subset drawn with
	// FitSeed (Moosavi-Dezfooli et al. fit on 10,000 ImageNet training
	// images); 0, or at least the training set's size, takes them all.
	// Default 500.
	FitImages int
	FitSeed   int64
	// From, when not empty, is a perturbation saved by an earlier fit: a
	// UAPFile, or a directory holding one (with its UAPInfoFile, whose
	// budget it keeps). It is loaded instead of fitted.
	From string
	// UAP are the fit's options: budget, fooling rate, passes, DeepFool's
	// steps, seed. Default attack.DefaultUAPOptions.
	UAP attack.UAPOptions
}

// DefaultUAPJobOptions returns the defaults stated at UAPJobOptions.
func DefaultUAPJobOptions() UAPJobOptions {
	return UAPJobOptions{FitImages: 500, FitSeed: 1, UAP: attack.DefaultUAPOptions()}
}

// UAPInfo is UAPInfoFile's content: the fit's figures and inputs.
type UAPInfo struct {
	Budget attack.Budget `json:"budget"`
	// Radius is the bound v was projected onto (attack.UAPFit.Radius).
	Radius float64 `json:"radius"`
	// FoolingRate is the fraction of the fitting images whose prediction
	// v changes, after Passes passes that added Updates DeepFool steps.
	FoolingRate float64 `json:"fooling_rate"`
	Passes      int     `json:"passes"`
	Updates     int     `json:"updates"`
	// FitImages training images of Data, drawn with FitSeed, against
	// Model.
	FitImages int               `json:"fit_images"`
	FitSeed   int64             `json:"fit_seed"`
	Data      string            `json:"data"`
	Model     string            `json:"model"`
	Options   attack.UAPOptions `json:"options"`
	// From is the file the perturbation was loaded from, when it was not
	// fitted by this job.
	From string `json:"from,omitempty"`
}

// uapState is the fit's checkpoint: its state and the key of its inputs.
type uapState struct {
	Key   string           `json:"key"`
	State *attack.UAPState `json:"state"`
}

// FitUniversal fits a universal adversarial perturbation (attack.FitUAP,
// Moosavi-Dezfooli et al. 2017) to the classifier on a class-balanced
// subset of the data set's training images, or loads the one uo.From
// names, saves it and its UAPInfo into Out (UAPFile, UAPInfoFile) and
// makes the attack adding it (attack.Universal) the job's attack. The fit
// checkpoints its state every 10 images and after each pass, and an
// interrupted fit with the same inputs resumes from it, giving the
// perturbation of an uninterrupted one. It reports the fit as "uap"
// progress to rep. Not with BPDA: the perturbation is fitted on the
// classifier alone.
func (j *AttackJob) FitUniversal(ctx context.Context, uo UAPJobOptions, rep progress.Reporter) (*UAPInfo, *attack.UAPFit, error) {
	if j.opts.BPDA {
		return nil, nil, errors.New("a universal perturbation is fitted on the classifier alone: not with BPDA")
	}
	if uo.FitImages < 0 {
		return nil, nil, fmt.Errorf("UAP: FitImages %d < 0", uo.FitImages)
	}
	rep = progress.Or(rep)
	var info *UAPInfo
	var fit *attack.UAPFit
	var err error
	if uo.From != "" {
		info, fit, err = j.loadUniversal(uo)
	} else {
		info, fit, err = j.fitUniversal(ctx, uo, rep)
	}
	if err != nil {
		return nil, nil, err
	}
	u, err := attack.NewUniversal(fit, info.Budget)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(j.opts.Out, 0o755); err != nil {
		return nil, nil, err
	}
	if err := npy.WriteFile(filepath.Join(j.opts.Out, UAPFile), fit.V); err != nil {
		return nil, nil, err
	}
	if err := writeJSON(filepath.Join(j.opts.Out, UAPInfoFile), info); err != nil {
		return nil, nil, err
	}
	j.SetAttack(u)
	return info, fit, nil
}

// fitUniversal fits the perturbation, checkpointed in the job's
// checkpoint directory.
func (j *AttackJob) fitUniversal(ctx context.Context, uo UAPJobOptions, rep progress.Reporter) (*UAPInfo, *attack.UAPFit, error) {
	if err := uo.UAP.Validate(); err != nil {
		return nil, nil, err
	}
	train, err := j.trainImages(ctx)
	if err != nil {
		return nil, nil, err
	}
	if train == nil || train.Len() == 0 {
		return nil, nil, fmt.Errorf("data set %s has no training images to fit a universal perturbation on", j.opts.Data)
	}
	if uo.FitImages > 0 && uo.FitImages < train.Len() {
		if train, err = train.BalancedSubset(uo.FitImages, uo.FitSeed); err != nil {
			return nil, nil, err
		}
	}
	opts, err := json.Marshal(uo.UAP)
	if err != nil {
		return nil, nil, err
	}
	h := sha256.New()
	for _, f := range j.clf.Files {
		statFiles(h, filepath.Dir(f), filepath.Base(f))
	}
	fmt.Fprintf(h, "%s\n%s\n%s\n", j.opts.Model, imagesKey(train.Images), opts)
	key := hex.EncodeToString(h.Sum(nil))
	path := filepath.Join(j.partialDir(), "uap-fit.json")
	ck := attack.UAPCheckpoint{Every: 10, Save: func(s *attack.UAPState) error {
		if err := os.MkdirAll(j.partialDir(), 0o755); err != nil {
			return err
		}
		return writeJSON(path, uapState{Key: key, State: s})
	}}
	var saved uapState
	if readJSON(path, &saved) == nil && saved.Key == key {
		ck.Resume = saved.State
	}
	fit, err := attack.FitUAPFrom(ctx, j.clf, train.Images, uo.UAP, ck, rep)
	if err != nil {
		return nil, nil, err
	}
	info := &UAPInfo{Budget: uo.UAP.Budget, Radius: fit.Radius, FoolingRate: fit.FoolingRate, Passes: fit.Passes, Updates: fit.Updates,
		FitImages: train.Len(), FitSeed: uo.FitSeed, Data: train.Name, Model: j.opts.Model, Options: uo.UAP}
	return info, fit, nil
}

// loadUniversal reads the perturbation uo.From names, with its UAPInfo
// when one lies beside it (else uo.UAP's budget), and checks its shape
// against the classifier's input, and under the guo protocol that its
// budget is not measured on pixels.
func (j *AttackJob) loadUniversal(uo UAPJobOptions) (*UAPInfo, *attack.UAPFit, error) {
	path := uo.From
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, UAPFile)
	}
	v, err := npy.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("UAP: %w", err)
	}
	c, h, w := j.clf.InputShape()
	if !tensor.SameShape(v, &tensor.Tensor{Shape: []int{1, c, h, w}}) {
		return nil, nil, &tensor.ShapeError{Op: "UAP " + path + " vs the classifier's input", Want: []int{1, c, h, w}, Got: v.Shape}
	}
	info := &UAPInfo{Budget: uo.UAP.Budget, Options: uo.UAP}
	if err := readJSON(filepath.Join(filepath.Dir(path), UAPInfoFile), info); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("UAP: %w", err)
	}
	info.From = path
	if j.opts.Protocol == attack.ProtocolGuo && info.Budget.Norm == attack.L2Rel {
		return nil, nil, fmt.Errorf("UAP %s was fitted at %v, normalized L2 on [0,1] pixels, and the %s protocol measures normalized L2 budgets on the classifier's normalized tensors: fit one under that protocol, or use this one under the %s protocol",
			path, info.Budget, attack.ProtocolGuo, attack.ProtocolText)
	}
	return info, &attack.UAPFit{V: v, Radius: info.Radius, FoolingRate: info.FoolingRate, Passes: info.Passes, Updates: info.Updates}, nil
}

// ScaledUniversal returns the attack adding fit's perturbation scaled to
// the budget eps instead of budget.Eps (v*eps/budget.Eps, radius in
// proportion): the strength a search for a target average dissimilarity
// adjusts on a fitted perturbation (attack.BudgetKnob).
func ScaledUniversal(fit *attack.UAPFit, budget attack.Budget, eps float64) (attack.Attack, error) {
	v := fit.V.Clone()
	f := float32(eps / budget.Eps)
	for i := range v.Data {
		v.Data[i] *= f
	}
	budget.Eps = eps
	return attack.NewUniversal(&attack.UAPFit{V: v}, budget)
}
