package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/porterlb/porter/test/netlab"
)

// scrape reads the speaker's /metrics on node n.
func scrape(ctx context.Context, n *netlab.Host) (string, error) {
	client := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{DialContext: n.Dial, DisableKeepAlives: true},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:7473/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("read metrics on %s: %w", n.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read metrics on %s: %w", n.Name, err)
	}
	return string(b), nil
}

// metric reads one speaker metric, summed over its labels, from the
// speaker's /metrics on node n.
func metric(ctx context.Context, n *netlab.Host, name string) (float64, error) {
	text, err := scrape(ctx, n)
	if err != nil {
		return 0, err
	}
	v, err := sumMetric(strings.NewReader(text), name)
	if err != nil {
		return 0, fmt.Errorf("%s on %s: %w", name, n.Name, err)
	}
	return v, nil
}

// metricWith reads one speaker metric, summed over the samples whose
// labels hold label (such as `change="gained"`).
func metricWith(ctx context.Context, n *netlab.Host, name, label string) (float64, error) {
	text, err := scrape(ctx, n)
	if err != nil {
		return 0, err
	}
	var kept strings.Builder
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, label) {
			kept.WriteString(line)
		}
	}
	if kept.Len() == 0 {
		return 0, nil // a counter with no sample yet has counted nothing
	}
	v, err := sumMetric(strings.NewReader(kept.String()), name)
	if err != nil {
		return 0, fmt.Errorf("%s on %s: %w", name, n.Name, err)
	}
	return v, nil
}

// sumMetric sums the samples of name, over all its labels, in the
// Prometheus text format.
func sumMetric(r io.Reader, name string) (float64, error) {
	var sum float64
	found := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, errors.New("not exposed")
	}
	return sum, nil
}
