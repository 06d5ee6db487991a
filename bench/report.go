package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Figure is one measured number, beside the baseline measured in the same
// run that gives it meaning.
type Figure struct {
	Section  string  `json:"section"`
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Baseline float64 `json:"baseline,omitempty"`
	// BaselineName says what the baseline is.
	BaselineName string  `json:"baselineName,omitempty"`
	Ratio        float64 `json:"ratio,omitempty"`
	// Target is the limit the figure is held to, if any, and Met whether
	// it held.
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Machine describes where the run happened, since every figure depends on
// it.
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	MemoryGiB int    `json:"memoryGiB"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
}

// Results are what a run writes to bench/results.json.
type Results struct {
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	Commit   string    `json:"commit"`
	Machine  Machine   `json:"machine"`
	Settings Settings  `json:"settings"`
	Figures  []Figure  `json:"figures"`
	// Problems are sections or steps that could not be measured; the run
	// went on without them.
	Problems []string `json:"problems,omitempty"`
}

// Settings are the sizes the run used.
type Settings struct {
	ARPRequests int `json:"arpRequests"`
	ARPRounds   int `json:"arpRounds,omitempty"`
	Trials      int `json:"trials"`
	// FalseFailoverFor is how long each false-failover scenario ran.
	FalseFailoverFor string `json:"falseFailoverFor,omitempty"`
	ProbeEvery       string `json:"probeEvery"`
	Scales           []int  `json:"scales"`
	Nodes            int    `json:"nodes"`
}

func (r *Results) add(f Figure) {
	if f.Baseline != 0 {
		f.Ratio = round(f.Value/f.Baseline, 2)
	}
	f.Value, f.Baseline = round(f.Value, 3), round(f.Baseline, 3)
	r.Figures = append(r.Figures, f)
}

func (r *Results) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stderr, "bench: "+msg)
	r.Problems = append(r.Problems, msg)
}

func met(ok bool) *bool { return &ok }

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// quantile of sorted-on-demand durations, nearest rank.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func describeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryGiB = int(math.Round(float64(kb) / (1 << 20)))
		}
	}
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	return m
}

// rewriteDoc writes the report at doc from the results at out.
func rewriteDoc(out, doc string) error {
	b, err := os.ReadFile(out)
	if err != nil {
		return fmt.Errorf("read the results: %w", err)
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("read the results %s: %w", out, err)
	}
	return writeDoc(doc, &r)
}

func (r *Results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// table prints the figures as a Markdown table, which also reads well in
// a terminal.
func (r *Results) table(w io.Writer) {
	fmt.Fprintln(w, "| section | figure | value | baseline | ratio | target | met |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, f := range r.Figures {
		base, ratio, m := "", "", ""
		if f.Baseline != 0 {
			base = fmt.Sprintf("%s %s (%s)", trim(f.Baseline), f.Unit, f.BaselineName)
			ratio = fmt.Sprintf("%s×", trim(f.Ratio))
		}
		if f.Met != nil {
			m = map[bool]string{true: "yes", false: "**no**"}[*f.Met]
		}
		name := f.Name
		if f.Note != "" {
			name += " (" + f.Note + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s %s | %s | %s | %s | %s |\n", f.Section, name, trim(f.Value), f.Unit, base, ratio, f.Target, m)
	}
}

func trim(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}
