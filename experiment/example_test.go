package experiment_test

import (
	"fmt"

	"github.com/stl-defense/stl/experiment"
)

func ExampleLoadConfig() {
	cfg, err := experiment.LoadConfig("testdata/small.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	// Fields from the file, defaults for the rest.
	fmt.Println(cfg.Name, cfg.Arch, cfg.Limit, cfg.Lambda, cfg.Attacks)
	fmt.Println(cfg.Data, cfg.Clusters, cfg.Filters, cfg.FilterSize)
	// Output:
	// small resnet-20 500 0.1 [FGSM-0.08 CW]
	// sample:cifar10 4 64 8
}
