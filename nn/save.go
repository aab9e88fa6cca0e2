package nn

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/nlpodyssey/safetensors"
	"github.com/stl-defense/stl/internal/safefile"
)

// File names inside a model directory.
const (
	WeightsFile  = "model.safetensors"
	MetadataFile = "model.json"
	formatV1     = 1
)

// Metadata is the provenance saved with a model: what it was trained on
// and how well it did. Zero values mean unknown.
type Metadata struct {
	Dataset       string  `json:"dataset,omitempty"`
	TrainImages   int     `json:"train_images,omitempty"`
	Epochs        int     `json:"epochs,omitempty"`
	TrainLoss     float64 `json:"train_loss,omitempty"`
	TrainAccuracy float64 `json:"train_accuracy,omitempty"`
	TestAccuracy  float64 `json:"test_accuracy,omitempty"`
	TestLoss      float64 `json:"test_loss,omitempty"`
	Seconds       float64 `json:"train_seconds,omitempty"`
	Notes         string  `json:"notes,omitempty"`
}

// modelFile is the JSON metadata file.
type modelFile struct {
	Format     int               `json:"format"`
	Kind       string            `json:"kind"` // "classifier" or "dae"
	Classifier *ClassifierConfig `json:"classifier,omitempty"`
	DAE        *DAEConfig        `json:"dae,omitempty"`
	Meta       Metadata          `json:"meta"`
}

// Saveable is a model that Save can write: *Classifier or *DAE.
type Saveable interface {
	Params() []*Param
	header() modelFile
}

func (m *Classifier) header() modelFile {
	c := m.cfg
	return modelFile{Format: formatV1, Kind: "classifier", Classifier: &c, Meta: m.Meta}
}

func (d *DAE) header() modelFile {
	c := d.cfg
	return modelFile{Format: formatV1, Kind: "dae", DAE: &c, Meta: d.Meta}
}

// Save writes m into dir (created if needed) as model.safetensors (every
// parameter and buffer, float32, under its dotted name, readable with
// Python's safetensors) and model.json (architecture, input size,
// normalization, seed and m's Metadata). Each file is replaced atomically.
func Save(dir string, m Saveable) error {
	h := m.header()
	if err := safefile.Write(filepath.Join(dir, WeightsFile), func(w io.Writer) error {
		return WriteWeights(w, m.Params(), map[string]string{"format": "stl-nn", "kind": h.Kind})
	}); err != nil {
		return fmt.Errorf("nn: save %s: %w", dir, err)
	}
	js, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	return safefile.WriteBytes(filepath.Join(dir, MetadataFile), append(js, '\n'))
}

// WriteWeights writes params (values only) to w in the safetensors format
// with the given string metadata.
func WriteWeights(w io.Writer, params []*Param, meta map[string]string) error {
	views := make(map[string]safetensors.TensorView, len(params))
	for _, p := range params {
		v, err := f32View(p.W, p.Shape)
		if err != nil {
			return err
		}
		views[p.Name] = v
	}
	return safetensors.SerializeToWriter(views, meta, w)
}

func f32View(data []float32, shape []int) (safetensors.TensorView, error) {
	b := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	sh := make([]uint64, len(shape))
	for i, d := range shape {
		sh[i] = uint64(d)
	}
	return safetensors.NewTensorView(safetensors.F32, sh, b)
}

// MismatchError reports a saved tensor that does not fit the model built
// from the saved configuration (or is missing, or is extra).
type MismatchError struct {
	File      string
	Name      string
	Want, Got []int // nil Got: missing; nil Want: unexpected
	Reason    string
}

func (e *MismatchError) Error() string {
	switch {
	case e.Reason != "":
		return fmt.Sprintf("nn: %s: tensor %q: %s", e.File, e.Name, e.Reason)
	case e.Got == nil:
		return fmt.Sprintf("nn: %s: tensor %q (shape %v) missing", e.File, e.Name, e.Want)
	case e.Want == nil:
		return fmt.Sprintf("nn: %s: unexpected tensor %q (shape %v): the file was written by a different architecture", e.File, e.Name, e.Got)
	}
	return fmt.Sprintf("nn: %s: tensor %q has shape %v, the model needs %v", e.File, e.Name, e.Got, e.Want)
}

// ReadWeights reads a safetensors buffer into params, matching by name;
// every param must be present with its exact shape and dtype F32, and no
// other tensor may be present. Errors are *MismatchError or format errors
// from the safetensors decoder. file names the source in errors.
func ReadWeights(data []byte, file string, params []*Param) error {
	st, err := safetensors.Deserialize(data)
	if err != nil {
		return fmt.Errorf("nn: %s: %w", file, err)
	}
	seen := map[string]bool{}
	for _, p := range params {
		seen[p.Name] = true
		v, ok := st.Tensor(p.Name)
		if !ok {
			return &MismatchError{File: file, Name: p.Name, Want: p.Shape}
		}
		if v.DType() != safetensors.F32 {
			return &MismatchError{File: file, Name: p.Name, Reason: fmt.Sprintf("dtype %s, want F32", v.DType())}
		}
		got := make([]int, len(v.Shape()))
		for i, d := range v.Shape() {
			got[i] = int(d)
		}
		if !slices.Equal(got, p.Shape) {
			return &MismatchError{File: file, Name: p.Name, Want: p.Shape, Got: got}
		}
		b := v.Data()
		for i := range p.W {
			p.W[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	}
	for _, n := range st.Names() {
		if !seen[n] {
			v, _ := st.Tensor(n)
			got := make([]int, len(v.Shape()))
			for i, d := range v.Shape() {
				got[i] = int(d)
			}
			return &MismatchError{File: file, Name: n, Got: got}
		}
	}
	return nil
}

func readHeader(dir string) (modelFile, error) {
	var h modelFile
	b, err := os.ReadFile(filepath.Join(dir, MetadataFile))
	if err != nil {
		return h, fmt.Errorf("nn: load %s: %w", dir, err)
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("nn: %s: %w", filepath.Join(dir, MetadataFile), err)
	}
	if h.Format != formatV1 {
		return h, fmt.Errorf("nn: %s: unsupported format %d", filepath.Join(dir, MetadataFile), h.Format)
	}
	return h, nil
}

// ErrWrongKind is returned when loading a DAE as a classifier or the
// reverse.
var ErrWrongKind = errors.New("nn: model directory holds another kind of model")

// Load reads a classifier saved by Save from dir. The network is rebuilt
// from model.json and the weights must match it exactly (*MismatchError
// otherwise). Threads is set to the saved value; see SetThreads.
func Load(dir string) (*Classifier, error) {
	h, err := readHeader(dir)
	if err != nil {
		return nil, err
	}
	if h.Kind != "classifier" || h.Classifier == nil {
		return nil, fmt.Errorf("%w: %s is a %q", ErrWrongKind, dir, h.Kind)
	}
	if h.Classifier.Threads < 1 {
		h.Classifier.Threads = 1
	}
	m, err := NewClassifier(*h.Classifier)
	if err != nil {
		return nil, fmt.Errorf("nn: %s: %w", dir, err)
	}
	m.Meta = h.Meta
	if err := loadWeights(dir, m.params); err != nil {
		return nil, err
	}
	return m, nil
}

// LoadDAE reads a DAE saved by Save from dir, like Load.
func LoadDAE(dir string) (*DAE, error) {
	h, err := readHeader(dir)
	if err != nil {
		return nil, err
	}
	if h.Kind != "dae" || h.DAE == nil {
		return nil, fmt.Errorf("%w: %s is a %q", ErrWrongKind, dir, h.Kind)
	}
	if h.DAE.Threads < 1 {
		h.DAE.Threads = 1
	}
	d, err := NewDAE(*h.DAE)
	if err != nil {
		return nil, fmt.Errorf("nn: %s: %w", dir, err)
	}
	d.Meta = h.Meta
	if err := loadWeights(dir, d.params); err != nil {
		return nil, err
	}
	return d, nil
}

func loadWeights(dir string, params []*Param) error {
	path := filepath.Join(dir, WeightsFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("nn: load %s: %w", dir, err)
	}
	return ReadWeights(b, path, params)
}
