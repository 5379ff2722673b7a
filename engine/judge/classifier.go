package judge

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"unicode"

	"github.com/ares-rlhf/ares/internal/jsonfile"
	"github.com/ares-rlhf/ares/internal/jsonl"
)

// Labelled is one training example of the classifier judge (JSONL).
type Labelled struct {
	Prompt   string  `json:"prompt"`
	Response string  `json:"response"`
	Label    float64 `json:"label"` // 1 harmful, 0 safe (soft labels allowed)
}

// Classifier is a logistic regression over hashed word n-grams of the
// response (and, with a separate namespace, of the prompt). Small, pure Go,
// deterministic; good enough to stand in for an oracle when one exists only
// for part of the data.
type Classifier struct {
	Version int `json:"version"`
	// Dim is the number of hash buckets (a power of two).
	Dim int `json:"dim"`
	// NGram is the longest word n-gram used.
	NGram int `json:"ngram"`
	// PromptFeatures adds prompt n-grams (namespace "p:").
	PromptFeatures bool    `json:"prompt_features"`
	Bias           float64 `json:"bias"`
	// Weights holds the non-zero weights as [bucket, weight] pairs.
	Weights [][2]float64 `json:"weights"`

	w []float64
}

// TrainOptions tune Train. Zero values take the defaults.
type TrainOptions struct {
	Dim            int     // default 1<<16
	NGram          int     // default 2
	Epochs         int     // default 8
	LearningRate   float64 // AdaGrad step, default 0.5
	L2             float64 // default 1e-6
	PromptFeatures bool
	Seed           int64
}

func (c *Classifier) Name() string { return "classifier" }

func tokens(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		// Keep brackets, colons and dashes inside tokens: payload-like markers
		// and other structured strings stay one feature.
		return unicode.IsSpace(r) || r == ',' || r == '.' || r == '!' || r == '?' || r == ';' || r == '"'
	})
}

func (c *Classifier) features(it Item) []int {
	var out []int
	add := func(ns string, toks []string) {
		for n := 1; n <= c.NGram; n++ {
			for i := 0; i+n <= len(toks); i++ {
				h := fnv.New32a()
				h.Write([]byte(ns))
				for _, t := range toks[i : i+n] {
					h.Write([]byte{0})
					h.Write([]byte(t))
				}
				out = append(out, int(h.Sum32())&(c.Dim-1))
			}
		}
	}
	add("r:", tokens(it.Response))
	if c.PromptFeatures {
		add("p:", tokens(it.Prompt))
	}
	return out
}

func (c *Classifier) logit(f []int) float64 {
	z := c.Bias
	if len(f) == 0 {
		return z
	}
	s := 0.0
	for _, i := range f {
		s += c.w[i]
	}
	// Normalise by sqrt(#features) so long responses are not over-confident.
	return z + s/math.Sqrt(float64(len(f)))
}

// Prob is the harm probability of one item.
func (c *Classifier) Prob(it Item) float64 { return sigmoid(c.logit(c.features(it))) }

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

func (c *Classifier) Score(ctx context.Context, items []Item) ([]float64, error) {
	out := make([]float64, len(items))
	for i, it := range items {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		out[i] = c.Prob(it)
	}
	return out, nil
}

// Train fits a classifier with AdaGrad on the logistic loss.
func Train(data []Labelled, o TrainOptions) (*Classifier, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("classifier: no training data")
	}
	if o.Dim <= 0 {
		o.Dim = 1 << 16
	}
	if o.Dim&(o.Dim-1) != 0 {
		return nil, fmt.Errorf("classifier: dim %d is not a power of two", o.Dim)
	}
	if o.NGram <= 0 {
		o.NGram = 2
	}
	if o.Epochs <= 0 {
		o.Epochs = 8
	}
	if o.LearningRate <= 0 {
		o.LearningRate = 0.5
	}
	if o.L2 == 0 {
		o.L2 = 1e-6
	}
	c := &Classifier{Version: 1, Dim: o.Dim, NGram: o.NGram, PromptFeatures: o.PromptFeatures, w: make([]float64, o.Dim)}
	feats := make([][]int, len(data))
	for i, d := range data {
		if d.Label < 0 || d.Label > 1 || math.IsNaN(d.Label) {
			return nil, fmt.Errorf("classifier: example %d: label %v is not in [0, 1]", i, d.Label)
		}
		feats[i] = c.features(Item{d.Prompt, d.Response})
	}
	g2 := make([]float64, o.Dim)
	var gb2 float64
	order := make([]int, len(data))
	for i := range order {
		order[i] = i
	}
	r := rand.New(rand.NewPCG(uint64(o.Seed), 0x6a756467))
	for ep := 0; ep < o.Epochs; ep++ {
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			f := feats[k]
			g := sigmoid(c.logit(f)) - data[k].Label
			gb2 += g * g
			c.Bias -= o.LearningRate * g / math.Sqrt(gb2+1e-8)
			if len(f) == 0 {
				continue
			}
			scale := 1 / math.Sqrt(float64(len(f)))
			for _, i := range f {
				gi := g*scale + o.L2*c.w[i]
				g2[i] += gi * gi
				c.w[i] -= o.LearningRate * gi / math.Sqrt(g2[i]+1e-8)
			}
		}
	}
	c.pack()
	return c, nil
}

func (c *Classifier) pack() {
	c.Weights = c.Weights[:0]
	for i, v := range c.w {
		if v != 0 {
			c.Weights = append(c.Weights, [2]float64{float64(i), v})
		}
	}
}

// Save writes the classifier as JSON.
func (c *Classifier) Save(path string) error {
	c.pack()
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// LoadClassifier reads a classifier saved by Save.
func LoadClassifier(path string) (*Classifier, error) {
	var c Classifier
	if err := jsonfile.Read(path, &c); err != nil {
		return nil, err
	}
	if c.Version != 1 {
		return nil, fmt.Errorf("%s: version: %d is not supported (want 1)", path, c.Version)
	}
	if c.Dim <= 0 || c.Dim&(c.Dim-1) != 0 || c.Dim > 1<<24 {
		return nil, fmt.Errorf("%s: dim: %d is not a power of two up to 2^24", path, c.Dim)
	}
	if c.NGram < 1 || c.NGram > 5 {
		return nil, fmt.Errorf("%s: ngram: %d is not in 1..5", path, c.NGram)
	}
	c.w = make([]float64, c.Dim)
	for k, p := range c.Weights {
		i := int(p[0])
		if float64(i) != p[0] || i < 0 || i >= c.Dim {
			return nil, fmt.Errorf("%s: weights[%d]: bucket %v out of range", path, k, p[0])
		}
		c.w[i] = p[1]
	}
	return &c, nil
}

// ReadLabelled reads labelled JSONL; errors name the file and line.
func ReadLabelled(path string) ([]Labelled, error) {
	ls, _, err := jsonl.ReadFile(path, true, func(l *Labelled) error {
		if l.Label < 0 || l.Label > 1 {
			return fmt.Errorf("label: %v is not in [0, 1]", l.Label)
		}
		return nil
	})
	return ls, err
}

// Metrics are a judge's agreement with labels at threshold 0.5.
type Metrics struct {
	N         int     `json:"n"`
	Accuracy  float64 `json:"accuracy"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
}

// Evaluate compares a judge's scores with binary labels (label >= 0.5).
func Evaluate(ctx context.Context, j Judge, data []Labelled) (Metrics, error) {
	items := make([]Item, len(data))
	for i, d := range data {
		items[i] = Item{d.Prompt, d.Response}
	}
	s, err := j.Score(ctx, items)
	if err != nil {
		return Metrics{}, err
	}
	var tp, fp, fn, ok int
	for i, d := range data {
		p, y := s[i] >= 0.5, d.Label >= 0.5
		if p == y {
			ok++
		}
		switch {
		case p && y:
			tp++
		case p && !y:
			fp++
		case !p && y:
			fn++
		}
	}
	m := Metrics{N: len(data), Accuracy: float64(ok) / math.Max(1, float64(len(data)))}
	if tp+fp > 0 {
		m.Precision = float64(tp) / float64(tp+fp)
	}
	if tp+fn > 0 {
		m.Recall = float64(tp) / float64(tp+fn)
	}
	return m, nil
}
