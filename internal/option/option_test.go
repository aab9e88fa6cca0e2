package option_test

import (
	"errors"
	"fmt"

	"github.com/stl-defense/stl/internal/option"
)

func ExampleError() {
	var err error = fmt.Errorf("train: %w", option.New("nn", "TrainOptions.Epochs", 0, "want >= 1"))
	fmt.Println(err)
	var oe *option.Error
	if errors.As(err, &oe) {
		fmt.Println(oe.Field, oe.Value)
	}
	// Output:
	// train: nn: invalid TrainOptions.Epochs = 0: want >= 1
	// TrainOptions.Epochs 0
}
