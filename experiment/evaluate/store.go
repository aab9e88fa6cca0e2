package evaluate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/stl-defense/stl/internal/safefile"
	"github.com/stl-defense/stl/npy"
	"github.com/stl-defense/stl/tensor"
)

// store keeps finished attacks in a directory, one subdirectory per
// attack named after what it was computed from, holding adv.npy (the
// adversarial images of every image, the clean ones where not attacked)
// and result.json (the AttackResult), each written atomically, result.json
// last. The zero store keeps nothing.
type store struct {
	dir  string
	base []byte // hash of Options.Key, the images and the labels
}

// Files of a stored attack.
const (
	storeAdv    = "adv.npy"
	storeResult = "result.json"
)

func newStore(dir, key string, x *tensor.Tensor, labels []int) (store, error) {
	if dir == "" {
		return store{}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return store{}, fmt.Errorf("evaluate: cache directory: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%v\n", key, labels)
	if err := npy.Write(h, x); err != nil { // the shape and every pixel
		return store{}, err
	}
	return store{dir: dir, base: h.Sum(nil)}, nil
}

// key names the stored attack of sp with the attack's settings and the
// images it attacks: every option that changes its result enters it.
func (s store) key(r *run, sp spec, settings json.RawMessage, active []bool) (string, error) {
	if s.dir == "" {
		return "", nil
	}
	h := sha256.New()
	h.Write(s.base)
	fmt.Fprintf(h, "\n%v %d\n%s\n%v\n%d %d %d %d\n", sp.id(), sp.steps, settings, active, r.o.Seed, r.o.Batch, r.o.EOTDraws, r.o.EvalDraws)
	if sp.route.Settings != nil { // a route without settings (BPDA) keeps the keys it had before they existed
		fmt.Fprintf(h, "route %s\n", sp.route.Settings)
	}
	// Only when set, so that the keys of attacks without them are those
	// they had before these options existed.
	if r.o.Round8 {
		fmt.Fprintln(h, "round8")
	}
	if r.o.WarmStart && sp.subj.defended {
		fmt.Fprintln(h, "warm")
	}
	if sp.subj.defended && r.t.DefenseKey != "" {
		fmt.Fprintf(h, "defense %s\n", r.t.DefenseKey)
	}
	name := strings.Join([]string{sp.subj.name, sp.attack, sp.route.Name, sp.budget.String(), sp.probe}, "-")
	name = strings.NewReplacer("--", "-", "=", "", "/", "").Replace(strings.TrimRight(name, "-"))
	return name + "-" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// load returns the stored result and images under key, or nil when there
// are none or they are damaged (then the attack runs again).
func (s store) load(key string, n int) (*AttackResult, *tensor.Tensor) {
	if s.dir == "" {
		return nil, nil
	}
	dir := filepath.Join(s.dir, key)
	b, err := os.ReadFile(filepath.Join(dir, storeResult))
	if err != nil {
		return nil, nil
	}
	var res AttackResult
	if json.Unmarshal(b, &res) != nil || len(res.Correct) != n || (res.Scope != nil && len(res.Scope) != n) {
		return nil, nil
	}
	adv, err := npy.ReadFile(filepath.Join(dir, storeAdv))
	if err != nil || len(adv.Shape) == 0 || adv.Shape[0] != n {
		return nil, nil
	}
	return &res, adv
}

// save stores res and adv under key.
func (s store) save(key string, res *AttackResult, adv *tensor.Tensor) error {
	if s.dir == "" {
		return nil
	}
	dir := filepath.Join(s.dir, key)
	if err := safefile.Write(filepath.Join(dir, storeAdv), func(w io.Writer) error { return npy.Write(w, adv) }); err != nil {
		return fmt.Errorf("evaluate: cache: %w", err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	if err := safefile.WriteBytes(filepath.Join(dir, storeResult), b); err != nil {
		return fmt.Errorf("evaluate: cache: %w", err)
	}
	return nil
}
