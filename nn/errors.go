package nn

import "github.com/stl-defense/stl/internal/option"

// OptionError reports an invalid field of an option or configuration
// struct: every Validate method of this package (ClassifierConfig,
// DAEConfig, ConvParams, SGDOptions, AdamOptions, OneCycle, TrainOptions,
// DAETrainOptions, BenchOptions) and the constructors and trainers that call them return
// it for the first invalid field. Field names the struct and field, for
// example "TrainOptions.Epochs". It is the project's one option error type,
// shared with packages dnnl and dataset.
type OptionError = option.Error

// ConfigError is OptionError under the name that ClassifierConfig and
// DAEConfig validation has always documented.
type ConfigError = OptionError
