package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/stl-defense/stl/advtrain"
	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/defense"
	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/tensor"
)

// advFlags are the adversarial-training options of "stl train classifier".
type advFlags struct {
	method    string
	eps, step string // pixel values: "8/255" or "0.031"; "" the method's default
	steps     int    // 0: the method's default
	fraction  float64
	defense   string // train behind this saved defense (STL + AT)
	universal bool
}

// advFile records the adversarial training of a --out directory, so that
// --resume continues it with the same settings.
const advFile = "adversarial.json"

func (a *advFlags) register(fl *pflag.FlagSet) {
	var names []string
	for _, m := range advtrain.Methods {
		names = append(names, string(m))
	}
	fl.StringVar(&a.method, "adv", "", "adversarial training: "+orList(names)+" (default: none)")
	fl.StringVar(&a.eps, "adv-eps", "", "L-infinity radius of the training perturbations, e.g. 8/255 or 0.031 (default 8/255)")
	fl.StringVar(&a.step, "adv-step", "", "size of each attack step (default: 2/255 for pgd, 1.25 eps for fgsm-rs)")
	fl.IntVar(&a.steps, "adv-steps", 0, "attack steps per batch (default: 7 for pgd; fgsm-rs takes 1)")
	fl.Float64Var(&a.fraction, "adv-fraction", 1, "share of each batch made adversarial, the rest staying clean")
	fl.StringVar(&a.defense, "adv-defense", "", "defense directory ('stl defense train'): train on T(x_adv), attacking the classifier behind the projection T through BPDA (STL + AT)")
	fl.BoolVar(&a.universal, "adv-universal", false, "with --adv-defense, project with the universal dictionary (STL) instead of the per-cluster ones (STL (cluster))")
}

// parsePixel reads a pixel value in [0, 1] units: a number or a fraction
// "k/255".
func parsePixel(flag, s string) (float64, error) {
	num, den, isFrac := strings.Cut(s, "/")
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err == nil && isFrac {
		var d float64
		d, err = strconv.ParseFloat(strings.TrimSpace(den), 64)
		if err == nil && !(d > 0) {
			err = errors.New("zero denominator")
		}
		v /= d
	}
	if err != nil {
		return 0, usagef("--%s %q: want a number or a fraction such as 8/255", flag, s)
	}
	return v, nil
}

// options returns the adversarial-training options the flags ask for, nil
// without --adv, seeded with seed.
func (a advFlags) options(seed uint64) (*advtrain.Options, error) {
	if a.method == "" {
		if a.eps != "" || a.step != "" || a.steps != 0 || (a.fraction != 1 && a.fraction != 0) || a.defense != "" || a.universal {
			return nil, usagef("--adv-eps, --adv-step, --adv-steps, --adv-fraction, --adv-defense and --adv-universal need --adv")
		}
		return nil, nil
	}
	o := advtrain.DefaultOptions(advtrain.Method(a.method))
	o.Seed, o.Fraction = seed, a.fraction
	var err error
	if a.eps != "" {
		if o.Eps, err = parsePixel("adv-eps", a.eps); err != nil {
			return nil, err
		}
		if o.Method == advtrain.FGSMRS {
			o.Step = 1.25 * o.Eps
		}
	}
	if a.step != "" {
		if o.Step, err = parsePixel("adv-step", a.step); err != nil {
			return nil, err
		}
	}
	if a.steps != 0 {
		o.Steps = a.steps
	}
	if a.universal && a.defense == "" {
		return nil, usagef("--adv-universal needs --adv-defense")
	}
	if err := o.Validate(); err != nil {
		return nil, usageError{err}
	}
	return &o, nil
}

// advRecord is the content of advFile.
type advRecord struct {
	Options   advtrain.Options `json:"options"`
	Defense   string           `json:"defense,omitempty"`
	Transform string           `json:"transform,omitempty"`
}

// String describes the record, e.g. "PGD eps 8/255, 7 steps of 2/255
// through STL (cluster) of DIR".
func (r advRecord) String() string {
	s := r.Options.String() + fmt.Sprintf(", seed %d", r.Options.Seed)
	if r.Defense != "" {
		s += fmt.Sprintf(" through %s of %s", r.Transform, r.Defense)
	}
	return s
}

// setupAdv prepares adversarial training for the run of f into model m:
// it loads the defense, checks that a resumed run continues with the same
// settings (or records them for a new one), notes them in m's metadata and
// returns the batch hook; nil without --adv.
func setupAdv(f trainFlags, m *nn.Classifier, w io.Writer) (func(context.Context, *nn.TrainBatch) error, error) {
	o, err := f.adv.options(f.seed)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(f.out, advFile)
	if o == nil {
		if _, err := os.Stat(path); f.resume && err == nil {
			return nil, usagef("--resume: the run in %s is adversarially trained (%s); resume it with the --adv flags it started with", f.out, advFile)
		} else if !f.resume && err == nil {
			// Left by an adversarial run stopped before its first epoch.
			if err := os.Remove(path); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	rec := advRecord{Options: *o}
	var t attack.Transform
	if f.adv.defense != "" {
		d, err := defense.Load(f.adv.defense)
		if err != nil {
			return nil, err
		}
		uni, strat, err := d.Transforms(defense.DefaultBackend().NewProjector)
		if err != nil {
			return nil, err
		}
		t = strat
		if f.adv.universal {
			t = uni
		}
		c, h, wd := m.InputShape()
		if err := d.CheckImages(tensor.New(1, c, h, wd)); err != nil {
			return nil, usagef("--adv-defense %s: %v", f.adv.defense, err)
		}
		rec.Defense, rec.Transform = f.adv.defense, t.Name()
	}
	if f.resume {
		var old advRecord
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &old)
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, usagef("--resume: the run in %s was trained without --adv; resume it with the flags it started with", f.out)
		}
		if err != nil {
			return nil, usagef("--resume: %s in %s: %v", advFile, f.out, err)
		}
		if old != rec {
			return nil, usagef("--resume: the run in %s was trained with %s, not %s; resume it with the flags it started with", f.out, old, rec)
		}
	} else {
		b, err := json.MarshalIndent(rec, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(f.out, 0o755); err != nil {
			return nil, err
		}
		if err := safefile.WriteBytes(path, append(b, '\n')); err != nil {
			return nil, err
		}
	}
	note := "adversarial training: " + o.String()
	if t != nil {
		note += " through " + t.Name() + " (BPDA), trained on its projections"
	}
	m.Meta.Notes = note
	fmt.Fprintln(w, note)
	return advtrain.Hook(*o, t)
}
