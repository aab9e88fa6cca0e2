package experiment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/stl-defense/stl/attack"
)

// LoadConfig reads a configuration file in YAML (.yaml, .yml) or JSON
// (.json, or any other extension whose content starts with '{'). Fields
// absent from the file keep their DefaultConfig values; unknown fields are
// an error, so that a misspelt setting is not silently ignored. The result
// is validated.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	isJSON := strings.EqualFold(filepath.Ext(path), ".json") ||
		(!strings.EqualFold(filepath.Ext(path), ".yaml") && !strings.EqualFold(filepath.Ext(path), ".yml") && bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")))
	cfg, err := DecodeConfig(bytes.NewReader(b), isJSON)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// DecodeConfig reads a configuration in JSON (isJSON) or YAML from r over
// DefaultConfig, rejecting unknown fields, and validates it.
func DecodeConfig(r io.Reader, isJSON bool) (Config, error) {
	cfg := DefaultConfig()
	if isJSON {
		d := json.NewDecoder(r)
		d.DisallowUnknownFields()
		if err := d.Decode(&cfg); err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
	} else {
		d := yaml.NewDecoder(r)
		d.KnownFields(true)
		if err := d.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("config: %w", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Settings returns every field of c as (name, value) pairs in declaration
// order, with the names of the JSON tags (those of STLSettings in its
// place, those of AdvTrainSettings prefixed "adv_train."), for the report.
func (c Config) Settings() [][2]string {
	var out [][2]string
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			name := prefix + strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
			if t.Field(i).Anonymous {
				walk(v.Field(i), prefix)
				continue
			}
			if t.Field(i).Type.Kind() == reflect.Struct {
				walk(v.Field(i), name+".")
				continue
			}
			val := v.Field(i).Interface()
			var s string
			if l, ok := val.([]string); ok {
				s = "[" + strings.Join(l, ", ") + "]"
			} else if l, ok := val.([]float64); ok {
				s = strings.Trim(fmt.Sprint(l), "[]")
				s = "[" + strings.ReplaceAll(s, " ", ", ") + "]"
			} else {
				s = fmt.Sprint(val)
			}
			if p, ok := val.(string); ok && name == "protocol" {
				s = attack.Protocol(p).String() // "" reads "text"
			}
			out = append(out, [2]string{name, s})
		}
	}
	walk(reflect.ValueOf(c), "")
	return out
}
