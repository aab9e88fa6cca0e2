package dataset_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/stl-defense/stl/dataset"
)

func ExampleLoad() {
	train, test, err := dataset.Load("sample:cifar10")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(train.Name, train.Images.Shape, train.Classes[3])
	fmt.Println(test.Name, test.Len(), test.ClassCounts())
	// Output:
	// sample:cifar10/train [2000 3 32 32] cat
	// sample:cifar10/test 500 [50 50 50 50 50 50 50 50 50 50]
}

func ExampleSet_BalancedSubset() {
	_, test, _ := dataset.Load("sample:imagenet10")
	sub, err := test.BalancedSubset(25, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sub.Len(), sub.ClassCounts())
	// Output:
	// 25 [3 3 3 3 3 2 2 2 2 2]
}

func ExampleWriteNPY() {
	_, test, _ := dataset.Load("sample:cifar10")
	adv := test.Head(4)
	for i := range adv.Images.Data { // float32 values no 8-bit format keeps
		adv.Images.Data[i] = adv.Images.Data[i]*0.9 + 0.0123
	}
	dir, _ := os.MkdirTemp("", "npy")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "adv.npy")
	if err := dataset.WriteNPY(path, adv); err != nil {
		fmt.Println(err)
		return
	}
	back, _ := dataset.ReadNPY(path)
	same := true
	for i, v := range back.Images.Data {
		same = same && v == adv.Images.Data[i]
	}
	fmt.Println("bit-identical:", same, "labels:", back.Labels)
	// Output:
	// bit-identical: true labels: [9 1 6 4]
}

func ExampleAugmenter() {
	_, test, _ := dataset.Load("sample:cifar10")
	aug, err := dataset.NewAugmenter(dataset.DefaultAugmentOptions(), 7)
	if err != nil {
		fmt.Println(err)
		return
	}
	batch := test.Head(8).Images
	out, _ := aug.Apply(nil, batch) // a new augmented batch of the same shape
	fmt.Println(out.Shape)
	// Output:
	// [8 3 32 32]
}
