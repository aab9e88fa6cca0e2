package baseline

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"sort"
	"sync"
	"testing"

	"github.com/stl-defense/stl/tensor"
)

var (
	testDBOnce sync.Once
	testDB     *PatchDB
	testDBErr  error
)

// testPatchDB is a small database (4000 patches) from the 16 training
// images of testdata, shared by the tests (it is read-only).
func testPatchDB(tb testing.TB) *PatchDB {
	tb.Helper()
	testDBOnce.Do(func() {
		train := loadBaselineStrip(tb, "cifar-train16.png")
		o := DefaultPatchDBOptions()
		o.MaxPatches = 4000
		testDB, testDBErr = BuildPatchDB(context.Background(), train, o)
	})
	if testDBErr != nil {
		tb.Fatal(testDBErr)
	}
	return testDB
}

func TestBuildPatchDB(t *testing.T) {
	ctx := context.Background()
	x := baselineRandBatch(2, 2, 3, 9, 8)
	all, err := BuildPatchDB(ctx, x, PatchDBOptions{Patch: 5, Stride: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * 5 * 4; all.Len() != want {
		t.Fatalf("Len = %d, want %d", all.Len(), want)
	}
	// Patch 0 of image 1 at (row 1, col 2) is the 4*1+2 = 6th of that image.
	p := all.patchAt(20 + 6)
	for ch := 0; ch < 3; ch++ {
		for r := 0; r < 5; r++ {
			for c := 0; c < 5; c++ {
				want := x.Data[1*3*72+ch*72+(1+r)*8+2+c]
				if got := p[(ch*5+r)*5+c]; got != want {
					t.Fatalf("patch value (%d,%d,%d) = %v, want %v", ch, r, c, got, want)
				}
			}
		}
	}
	sub, err := BuildPatchDB(ctx, x, PatchDBOptions{Patch: 5, Stride: 1, MaxPatches: 7, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if sub.Len() != 7 {
		t.Fatalf("subsampled Len = %d, want 7", sub.Len())
	}
	// Every kept patch is one of all's, in the training order.
	last := -1
	for i := 0; i < sub.Len(); i++ {
		j := 0
		for ; j < all.Len(); j++ {
			if equalF32(all.patchAt(j), sub.patchAt(i)) {
				break
			}
		}
		if j == all.Len() || j <= last {
			t.Fatalf("subsampled patch %d is not a new patch of the full database in order (%d after %d)", i, j, last)
		}
		last = j
	}
	for _, c := range []struct {
		name string
		opts PatchDBOptions
		x    *tensor.Tensor
	}{
		{"patch 1", PatchDBOptions{Patch: 1, Stride: 1}, x},
		{"stride 0", PatchDBOptions{Patch: 5, Stride: 0}, x},
		{"negative max", PatchDBOptions{Patch: 5, Stride: 1, MaxPatches: -1}, x},
		{"patch larger than the images", PatchDBOptions{Patch: 9, Stride: 1}, x},
	} {
		var pe *ParamError
		if _, err := BuildPatchDB(ctx, c.x, c.opts); !errors.As(err, &pe) {
			t.Errorf("%s: error %v, want *ParamError", c.name, err)
		}
	}
}

func equalF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestQuiltKNN(t *testing.T) {
	db := testPatchDB(t)
	q, err := NewQuilting(db, DefaultQuiltOptions())
	if err != nil {
		t.Fatal(err)
	}
	queries := baselineRandBatch(11, 1, 7, 3, 25).Data // 7 queries of 75 values
	got := q.knn(queries, 7)
	d := db.dim()
	for j := 0; j < 7; j++ {
		type cand struct {
			i    int
			dist float64
		}
		cs := make([]cand, db.Len())
		for i := range cs {
			var s float64
			for k, v := range db.patchAt(i) {
				e := float64(v) - float64(queries[j*d+k])
				s += e * e
			}
			cs[i] = cand{i, s}
		}
		sort.Slice(cs, func(a, b int) bool { return cs[a].dist < cs[b].dist })
		// The K returned must be the K smallest distances (up to float32
		// rounding at the boundary).
		kth := cs[len(got[j])-1].dist
		for _, i := range got[j] {
			var s float64
			for k, v := range db.patchAt(i) {
				e := float64(v) - float64(queries[j*d+k])
				s += e * e
			}
			if s > kth+1e-4 {
				t.Errorf("query %d: returned patch %d at distance %.5f beyond the K-th %.5f", j, i, s, kth)
			}
		}
		if got[j][0] != cs[0].i && math.Abs(cs[0].dist-cs[1].dist) > 1e-4 {
			t.Errorf("query %d: nearest %d, want %d", j, got[j][0], cs[0].i)
		}
	}
}

// TestQuiltOutputFromDatabase checks that every output pixel is the pixel of
// a database patch placed over it, that the chosen patches are among the K
// nearest, and that pixels no seam reaches come from their unique patch.
func TestQuiltOutputFromDatabase(t *testing.T) {
	db := testPatchDB(t)
	q, _ := NewQuilting(db, DefaultQuiltOptions())
	x := loadBaselineStrip(t, "cifar4.png")
	const c, h, w = 3, 32, 32
	img := x.Data[:c*h*w]
	out := make([]float32, len(img))
	var chosen []int
	q.quiltImage(out, img, c, h, w, imageRand(42), &chosen)
	P, step := db.Patch, db.Patch-q.opts.Overlap
	_, bx := quiltGrid(w, P, step)
	if len(chosen) != bx*bx {
		t.Fatalf("%d patches chosen, want %d", len(chosen), bx*bx)
	}
	for r := 0; r < h; r++ {
		for col := 0; col < w; col++ {
			covering := 0
			match := false
			for b, idx := range chosen {
				y0, x0 := (b/bx)*step, (b%bx)*step
				if r < y0 || r >= y0+P || col < x0 || col >= x0+P {
					continue
				}
				covering++
				tile := db.patchAt(idx)
				ok := true
				for ch := 0; ch < c; ch++ {
					if tile[(ch*P+r-y0)*P+col-x0] != out[ch*h*w+r*w+col] {
						ok = false
					}
				}
				match = match || ok
			}
			if !match {
				t.Fatalf("pixel (%d,%d) comes from none of the %d patches over it", r, col, covering)
			}
		}
	}
	// The chosen patches are among the K nearest of their queries.
	ph, _ := quiltGrid(h, P, step)
	if ph != h {
		t.Fatalf("32 px should need no padding with patch 5 step 3, got %d", ph)
	}
	for b, idx := range chosen {
		y0, x0 := (b/bx)*step, (b%bx)*step
		query := make([]float32, 0, c*P*P)
		for ch := 0; ch < c; ch++ {
			for r := 0; r < P; r++ {
				query = append(query, img[ch*h*w+(y0+r)*w+x0:ch*h*w+(y0+r)*w+x0+P]...)
			}
		}
		nn := q.knn(query, 1)[0]
		found := false
		for _, i := range nn {
			found = found || i == idx
		}
		if !found {
			t.Fatalf("block %d: patch %d is not among the K nearest %v", b, idx, nn)
		}
	}
}

// TestQuiltK1ReproducesDatabaseImage: when the database holds the image's
// own grid patches, the nearest patch of each query is itself (distance
// 0), so quilting with K = 1 gives the image back exactly.
func TestQuiltK1ReproducesDatabaseImage(t *testing.T) {
	ctx := context.Background()
	x := loadBaselineStrip(t, "cifar4.png")
	one := &tensor.Tensor{Shape: []int{1, 3, 32, 32}, Data: x.Data[3*3*32*32:]}
	db, err := BuildPatchDB(ctx, one, PatchDBOptions{Patch: 5, Stride: 3})
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultQuiltOptions()
	o.K = 1
	q, err := NewQuilting(db, o)
	if err != nil {
		t.Fatal(err)
	}
	if q.Randomized() {
		t.Error("K = 1 says randomized")
	}
	y, err := q.Apply(ctx, one)
	if err != nil {
		t.Fatal(err)
	}
	for i := range y.Data {
		if y.Data[i] != one.Data[i] {
			t.Fatalf("value %d: %v, want %v", i, y.Data[i], one.Data[i])
		}
	}
	// A size off the grid (30 px: 5 + 3k does not hit 30) is mirrored,
	// quilted and cropped back; the shape survives.
	// Images smaller than a patch are mirrored up to one patch.
	for _, sz := range [][2]int{{30, 27}, {3, 4}, {1, 1}, {5, 8}} {
		odd := baselineRandBatch(5, 1, 3, sz[0], sz[1])
		y2, err := q.Apply(ctx, odd)
		if err != nil {
			t.Fatal(err)
		}
		if !tensor.SameShape(odd, y2) {
			t.Fatalf("shape %v, want %v", y2.Shape, odd.Shape)
		}
	}
}

func TestMinCut(t *testing.T) {
	// A zero-cost path wandering by one offset per step is found exactly.
	const L, O = 6, 4
	path := []int{3, 2, 2, 1, 0, 1}
	e := make([]float64, L*O)
	for t := 0; t < L; t++ {
		for o := 0; o < O; o++ {
			if o != path[t] {
				e[t*O+o] = 1 + float64(o)
			}
		}
	}
	cut := make([]int, L)
	minCut(cut, e, make([]float64, L*O), L, O)
	for i := range path {
		if cut[i] != path[i] {
			t.Fatalf("cut %v, want %v", cut, path)
		}
	}
}

func TestQuiltErrors(t *testing.T) {
	db := testPatchDB(t)
	if _, err := NewQuilting(nil, DefaultQuiltOptions()); !errors.Is(err, ErrNoPatchDB) {
		t.Errorf("nil database: %v", err)
	}
	for _, c := range []struct {
		field string
		opts  QuiltOptions
	}{
		{"Overlap", QuiltOptions{Overlap: 0, K: 10}},
		{"Overlap", QuiltOptions{Overlap: 5, K: 10}},
		{"K", QuiltOptions{Overlap: 2, K: 0}},
		{"K", QuiltOptions{Overlap: 2, K: db.Len() + 1}},
	} {
		var pe *ParamError
		if _, err := NewQuilting(db, c.opts); !errors.As(err, &pe) || pe.Field != c.field {
			t.Errorf("%+v: error %v, want *ParamError on %s", c.opts, err, c.field)
		}
	}
	q, _ := NewQuilting(db, DefaultQuiltOptions())
	var ce *ChannelsError
	if _, err := q.Apply(context.Background(), tensor.New(1, 1, 8, 8)); !errors.As(err, &ce) {
		t.Errorf("grey batch on a colour database: %v, want *ChannelsError", err)
	}
}

func TestPatchDBEncodeDecode(t *testing.T) {
	db := testPatchDB(t)
	var buf bytes.Buffer
	if err := db.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	enc := buf.Bytes()
	if want := 24 + 4*len(db.Data); len(enc) != want {
		t.Fatalf("encoded %d bytes, want %d", len(enc), want)
	}
	got, err := DecodePatchDB(bytes.NewReader(enc))
	if err != nil {
		t.Fatal(err)
	}
	if got.Patch != db.Patch || got.Channels != db.Channels || !equalF32(got.Data, db.Data) || !equalF32(got.norms, db.norms) {
		t.Fatal("decoded database differs")
	}
	corrupt := func(f func(b []byte)) []byte { b := append([]byte(nil), enc...); f(b); return b }
	cases := []decodeCase{
		{"empty", nil, io.ErrUnexpectedEOF},
		{"short header", enc[:10], io.ErrUnexpectedEOF},
		{"truncated values", enc[:len(enc)-3], io.ErrUnexpectedEOF},
		{"bad magic", corrupt(func(b []byte) { b[0] = 'X' }), ErrPatchDBFormat},
		{"patch 0", corrupt(func(b []byte) { b[8] = 0 }), ErrPatchDBFormat},
		{"huge count", corrupt(func(b []byte) { b[23] = 0x7f }), ErrPatchDBFormat},
		{"value above 1", corrupt(func(b []byte) { copy(b[24:], []byte{0, 0, 0x80, 0x40}) }), ErrPatchDBFormat},
	}
	checkDecodeErrors(t, DecodePatchDB, cases)
	fix := checkSaveLoad(t, "db.qdb", db.Save, LoadPatchDB, func(b *PatchDB) bool { return equalF32(b.Data, db.Data) }, "tiny.qdb")
	if fix.Patch != 5 || fix.Channels != 3 || fix.Len() != 20 {
		t.Errorf("fixture: patch %d, channels %d, %d patches; want 5, 3, 20", fix.Patch, fix.Channels, fix.Len())
	}
}

func FuzzDecodePatchDB(f *testing.F) {
	fuzzRoundTrip(f, "tiny.qdb", 30, patchDBMagic, DecodePatchDB)
}
