package dataset

import (
	"context"
	"reflect"
	"testing"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	train, test, err := Load("sample:imagenet10")
	if err != nil {
		t.Fatal(err)
	}
	train, test = train.Head(12), test.Head(5)
	// Class names with spaces whose folder names sort differently.
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			dir := t.TempDir()
			if err := Save(dir, train, test, f, nil); err != nil {
				t.Fatal(err)
			}
			tr, te, err := LoadContext(context.Background(), dir, DefaultLoadOptions())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tr.Classes, train.Classes) || !reflect.DeepEqual(te.Classes, test.Classes) {
				t.Errorf("classes %v, want %v", tr.Classes, train.Classes)
			}
			want := []*Set{train, test}
			if f == FormatPNG { // read back in class order
				want = []*Set{train.Subset(byClass(train)), test.Subset(byClass(test))}
			}
			for i, got := range []*Set{tr, te} {
				if !equalF32(got.Images.Data, want[i].Images.Data) || !reflect.DeepEqual(got.Labels, want[i].Labels) {
					t.Errorf("%s: part %d differs after round trip", f, i)
				}
			}
		})
	}
	if err := Save(t.TempDir(), train, nil, "jpeg", nil); err == nil {
		t.Error("unknown format accepted")
	}
}

// byClass returns the indices of s sorted stably by label.
func byClass(s *Set) []int {
	var idx []int
	for c := range s.Classes {
		for i, l := range s.Labels {
			if l == c {
				idx = append(idx, i)
			}
		}
	}
	return idx
}
