package attack

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// Files of a saved adversarial set. A set is a directory holding
//
//	adv.npy     the adversarial images, float32 '<f4' (N, C, H, W), pixels
//	            in [0,1]; read back bit for bit
//	labels.npy  the labels the attack was given, int64 '<i8' (N): true
//	            classes, or target classes when meta.json says targeted
//	meta.json   SetMeta: attack, options, budget, the figures of the run and
//	            the per-image budgets reached (dissimilarity, L-infinity),
//	            predictions and success flags
//
// Each file is written atomically and meta.json last, so a directory with a
// meta.json describes complete arrays; LoadSet cross-checks the three.
const (
	AdvFile    = "adv.npy"
	LabelsFile = "labels.npy"
	MetaFile   = "meta.json"

	setFormat  = "stl-adversarial-set"
	setVersion = 1
)

// SetMeta is the content of meta.json.
type SetMeta struct {
	Format   string          `json:"format"`  // "stl-adversarial-set"
	Version  int             `json:"version"` // 1
	Attack   string          `json:"attack"`  // Attack.Name()
	Options  json.RawMessage `json:"options,omitempty"`
	Budget   Budget          `json:"budget"`
	Targeted bool            `json:"targeted"`
	// Protocol is the attack protocol the budget was read under (see
	// Protocol: under ProtocolRelease "FGSM-0.08" is an L-infinity step
	// of 8/255); "" in sets written before protocols were recorded, which
	// read as ProtocolText. Round8 is set when the images were rounded to
	// 8 bits (Rounded) before the figures below were measured.
	Protocol Protocol `json:"protocol,omitempty"`
	Round8   bool     `json:"round8,omitempty"`
	// Model and Data name what was attacked (free text, e.g. file paths).
	Model string `json:"model,omitempty"`
	Data  string `json:"data,omitempty"`
	// Indices are the positions of the images in Data, when a subset.
	Indices []int `json:"indices,omitempty"`
	Shape   []int `json:"shape"`

	Passes        int     `json:"passes"` // forward+backward passes on the batches
	SuccessRate   float64 `json:"success_rate"`
	CleanAccuracy float64 `json:"clean_accuracy"` // against labels (untargeted only)
	AdvAccuracy   float64 `json:"adv_accuracy"`   // against labels (untargeted only)

	Dissim    []float64 `json:"dissim"` // ||x_adv-x0||_2/||x0||_2 per image
	LInf      []float64 `json:"linf"`   // ||x_adv-x0||_inf per image
	CleanPred []int     `json:"clean_pred"`
	AdvPred   []int     `json:"adv_pred"`
	Success   []bool    `json:"success"`

	// Draws is, in a checkpointed batch of RunBatches with
	// BatchOptions.Draws, the count that function advanced by while the
	// batch was attacked (the images a randomized defense transformed).
	Draws int64 `json:"draws,omitempty"`
}

// Set is an adversarial set with its labels and metadata.
type Set struct {
	Adv    *tensor.Tensor
	Labels []int
	Meta   SetMeta
}

// NewSet gathers the outcome r of attack a on images with the given labels
// into a Set. r's slices are shared, not copied.
func NewSet(a Attack, labels []int, r *Result) (*Set, error) {
	if a == nil || r == nil || r.Adv == nil {
		return nil, fmt.Errorf("attack: NewSet needs an attack and a result")
	}
	n := len(labels)
	if len(r.Adv.Shape) == 0 || r.Adv.Shape[0] != n || len(r.Dissim) != n || len(r.LInf) != n ||
		len(r.CleanPred) != n || len(r.AdvPred) != n || len(r.Success) != n {
		return nil, &tensor.ShapeError{Op: "attack.NewSet: result vs labels", Want: []int{n}, Got: r.Adv.Shape}
	}
	opts, err := json.Marshal(a)
	if err != nil {
		opts = nil
	}
	m := SetMeta{
		Format: setFormat, Version: setVersion, Attack: a.Name(), Options: opts,
		Budget: a.Budget(), Targeted: a.Targeted(), Round8: IsRounded(a), Shape: append([]int(nil), r.Adv.Shape...),
		Passes: r.Passes, SuccessRate: r.SuccessRate(),
		Dissim: r.Dissim, LInf: r.LInf, CleanPred: r.CleanPred, AdvPred: r.AdvPred, Success: r.Success,
	}
	if !m.Targeted {
		m.CleanAccuracy, m.AdvAccuracy = r.CleanAccuracy(labels), r.AdvAccuracy(labels)
	}
	return &Set{Adv: r.Adv, Labels: labels, Meta: m}, nil
}

// Save writes s to the directory dir (created if needed), replacing a set
// already there. See AdvFile for the layout.
func (s *Set) Save(dir string) error {
	if err := s.check(); err != nil {
		return err
	}
	return saveFiles(dir, func(path string) error { return npy.WriteFile(path, s.Adv) }, s.Labels, s.Meta)
}

// saveFiles writes a set's files into dir, adv.npy by writeAdv (given its
// path, written atomically), meta.json last.
func saveFiles(dir string, writeAdv func(path string) error, labels []int, meta SetMeta) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Remove an older meta.json first: a crash in between leaves no
	// meta.json rather than one describing other arrays.
	if err := os.Remove(filepath.Join(dir, MetaFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := writeAdv(filepath.Join(dir, AdvFile)); err != nil {
		return err
	}
	if err := npy.WriteIntsFile(filepath.Join(dir, LabelsFile), labels); err != nil {
		return err
	}
	js, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return fmt.Errorf("attack: encode %s: %w", MetaFile, err)
	}
	return safefile.WriteBytes(filepath.Join(dir, MetaFile), append(js, '\n'))
}

// LoadSet reads a set written by Save. It returns a *SetError when the files
// disagree with each other or the metadata is not a set's.
func LoadSet(dir string) (*Set, error) {
	js, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if err != nil {
		return nil, err
	}
	adv, err := os.Open(filepath.Join(dir, AdvFile))
	if err != nil {
		return nil, err
	}
	defer adv.Close()
	labels, err := os.Open(filepath.Join(dir, LabelsFile))
	if err != nil {
		return nil, err
	}
	defer labels.Close()
	return DecodeSet(dir, js, bufio.NewReader(adv), bufio.NewReader(labels))
}

// DecodeSet decodes an adversarial set from its three parts: meta (the
// content of meta.json) and readers of adv.npy and labels.npy. dir names the
// set in errors. It checks the metadata before reading the arrays, and that
// arrays and metadata agree; LoadSet reads a set's directory with it.
func DecodeSet(dir string, meta []byte, adv, labels io.Reader) (*Set, error) {
	m, err := decodeMeta(dir, meta)
	if err != nil {
		return nil, err
	}
	x, err := npy.Read(adv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, AdvFile), err)
	}
	l, err := npy.ReadInts(labels)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, LabelsFile), err)
	}
	s := &Set{Adv: x, Labels: l, Meta: m}
	if err := s.check(); err != nil {
		return nil, &SetError{Dir: dir, Msg: err.Error()}
	}
	return s, nil
}

// decodeMeta decodes and checks the content of a set's meta.json.
func decodeMeta(dir string, meta []byte) (SetMeta, error) {
	var m SetMeta
	dec := json.NewDecoder(bytes.NewReader(meta))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, &SetError{Dir: dir, Msg: fmt.Sprintf("%s: %v", MetaFile, err)}
	}
	if m.Format != setFormat || m.Version != setVersion {
		return m, &SetError{Dir: dir, Msg: fmt.Sprintf("%s: format %q version %d, want %q version %d", MetaFile, m.Format, m.Version, setFormat, setVersion)}
	}
	if m.Protocol.index() < 0 {
		return m, &SetError{Dir: dir, Msg: fmt.Sprintf("%s: unknown protocol %q (want one of %s)", MetaFile, m.Protocol, strings.Join(ProtocolNames(), ", "))}
	}
	return m, nil
}

// check verifies that arrays and metadata agree.
func (s *Set) check() error {
	if s.Adv == nil {
		return fmt.Errorf("attack: set has no images")
	}
	if err := checkShapes(s.Adv.Shape, len(s.Labels), s.Meta); err != nil {
		return err
	}
	return s.Adv.Validate()
}

// checkShapes verifies that images of shape, n labels and the metadata m
// agree.
func checkShapes(shape []int, labels int, m SetMeta) error {
	n, _, _, _, err := (&tensor.Tensor{Shape: shape}).NCHW()
	if err != nil {
		return err
	}
	if !slices.Equal(shape, m.Shape) {
		return &tensor.ShapeError{Op: "attack: set images vs metadata", Want: m.Shape, Got: shape}
	}
	for name, l := range map[string]int{"labels": labels, "dissim": len(m.Dissim), "linf": len(m.LInf),
		"clean_pred": len(m.CleanPred), "adv_pred": len(m.AdvPred), "success": len(m.Success)} {
		if l != n {
			return &tensor.ShapeError{Op: "attack: set " + name, Want: []int{n}, Got: []int{l}}
		}
	}
	if m.Indices != nil && len(m.Indices) != n {
		return &tensor.ShapeError{Op: "attack: set indices", Want: []int{n}, Got: []int{len(m.Indices)}}
	}
	return nil
}

// SetError reports an adversarial set directory whose files are
// inconsistent or not a set.
type SetError struct {
	Dir, Msg string
}

func (e *SetError) Error() string { return fmt.Sprintf("attack: set %s: %s", e.Dir, e.Msg) }

// MergeSets concatenates, in order, adversarial sets computed by the same
// attack with the same options under the same protocol and rounding
// (SetMeta.Protocol, "" counting as ProtocolText) against the same model
// and data (e.g. the shards of `stl attack --shard i/n`), recomputing the
// summary figures (passes, success rate, accuracies) over all of them. The
// sets must all record their image indices or none do. The result shares
// no memory with the inputs.
func MergeSets(sets []*Set) (*Set, error) {
	metas := make([]SetMeta, len(sets))
	labels := make([][]int, len(sets))
	for i, s := range sets {
		if err := s.check(); err != nil {
			return nil, fmt.Errorf("attack: set %d: %w", i+1, err)
		}
		metas[i], labels[i] = s.Meta, s.Labels
	}
	m, l, err := mergeMeta(metas, labels)
	if err != nil {
		return nil, err
	}
	out := &Set{Adv: tensor.New(m.Shape...), Labels: l, Meta: m}
	at := 0
	for _, s := range sets {
		copy(out.Adv.Data[at:], s.Adv.Data)
		at += len(s.Adv.Data)
	}
	return out, nil
}

// mergeMeta checks that sets of metadata metas and labels may be merged
// (MergeSets) and returns the merged metadata and labels.
func mergeMeta(metas []SetMeta, labels [][]int) (SetMeta, []int, error) {
	if len(metas) == 0 {
		return SetMeta{}, nil, fmt.Errorf("attack: no sets to merge")
	}
	first := metas[0]
	n := 0
	for i, m := range metas {
		switch {
		case m.Protocol.String() != first.Protocol.String() || m.Round8 != first.Round8:
			return first, nil, fmt.Errorf("attack: set %d was made under protocol %s%s, set 1 under %s%s", i+1, m.Protocol, roundWords(m.Round8), first.Protocol, roundWords(first.Round8))
		case m.Attack != first.Attack || string(m.Options) != string(first.Options) || !m.Budget.Equal(first.Budget) || m.Targeted != first.Targeted:
			return first, nil, fmt.Errorf("attack: set %d was made by %s %s, set 1 by %s %s", i+1, m.Attack, m.Options, first.Attack, first.Options)
		case m.Model != first.Model || m.Data != first.Data:
			return first, nil, fmt.Errorf("attack: set %d attacked model %q on %q, set 1 model %q on %q", i+1, m.Model, m.Data, first.Model, first.Data)
		case !slices.Equal(m.Shape[1:], first.Shape[1:]):
			return first, nil, &tensor.ShapeError{Op: fmt.Sprintf("attack: set %d images", i+1), Want: first.Shape[1:], Got: m.Shape[1:]}
		case (m.Indices == nil) != (first.Indices == nil):
			return first, nil, fmt.Errorf("attack: set %d and set 1 disagree on recording image indices", i+1)
		}
		n += m.Shape[0]
	}
	m := first
	m.Shape, m.Passes, m.Draws = append([]int{n}, first.Shape[1:]...), 0, 0
	m.Dissim, m.LInf, m.CleanPred, m.AdvPred, m.Success, m.Indices = nil, nil, nil, nil, nil, nil
	var all []int
	for i, sm := range metas {
		all = append(all, labels[i]...)
		m.Passes += sm.Passes
		m.Dissim, m.LInf = append(m.Dissim, sm.Dissim...), append(m.LInf, sm.LInf...)
		m.CleanPred, m.AdvPred = append(m.CleanPred, sm.CleanPred...), append(m.AdvPred, sm.AdvPred...)
		m.Success = append(m.Success, sm.Success...)
		if sm.Indices != nil {
			m.Indices = append(m.Indices, sm.Indices...)
		}
	}
	r := Result{CleanPred: m.CleanPred, AdvPred: m.AdvPred, Success: m.Success}
	m.SuccessRate = r.SuccessRate()
	if !m.Targeted {
		m.CleanAccuracy, m.AdvAccuracy = r.CleanAccuracy(all), r.AdvAccuracy(all)
	}
	return m, all, nil
}

// roundWords says whether images were rounded to 8 bits.
func roundWords(r bool) string {
	if r {
		return " with 8-bit rounding"
	}
	return " without rounding"
}
