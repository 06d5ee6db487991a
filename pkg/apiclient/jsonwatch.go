package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/porterlb/porter/pkg/jsonprune"
)

// maxEvent bounds one watch event, as client-go's decoder does.
const maxEvent = 16 << 20

// watchJSON watches with req, a JSON watch request, decoding each event on
// its own.
//
// client-go's watch decoder keeps a buffer the size of the largest event
// it has seen, twice over (the framer's and the decoder's), for as long as
// the watch lasts. A pool whose status lists 10,000 addresses, or a NIC
// report that announces them, made every speaker hold megabytes for
// events it reads only the spec or a few fields of. Here an event's bytes
// are garbage once it is decoded. The values at unread, paths in the
// event, are blanked before it is.
func watchJSON(ctx context.Context, req *rest.Request, decoder runtime.Decoder, unread []jsonprune.Path) (watch.Interface, error) {
	body, err := req.Stream(ctx)
	if err != nil {
		return nil, err
	}
	return watch.NewStreamWatcher(&jsonEvents{body: body, r: newLineReader(body), decoder: decoder, unread: unread},
		apierrors.NewClientErrorReporter(http.StatusInternalServerError, "GET", "ClientWatchDecoding")), nil
}

// jsonEvents reads a JSON watch stream: one event per line.
type jsonEvents struct {
	body    io.ReadCloser
	r       *bufio.Reader
	decoder runtime.Decoder
	unread  []jsonprune.Path
}

func (d *jsonEvents) Decode() (watch.EventType, runtime.Object, error) {
	line, err := d.line()
	if err != nil {
		return "", nil, err
	}
	return d.decode(line)
}

// DecodeEvent decodes one line of a JSON watch stream of r, as r's
// watches do.
func (r Resource) DecodeEvent(line []byte) (watch.EventType, runtime.Object, error) {
	d := jsonEvents{decoder: r.c.decoder, unread: r.prefixed("object")}
	return d.decode(line)
}

func (d *jsonEvents) decode(line []byte) (watch.EventType, runtime.Object, error) {
	if len(d.unread) > 0 {
		// An error event holds a Status, not the resource: its fields
		// are not the resource's, and it is small.
		typ, err := jsonprune.Member(line, "type")
		if err != nil {
			return "", nil, fmt.Errorf("decode watch event: %w", err)
		}
		if string(typ) != `"`+string(watch.Error)+`"` {
			if line, err = jsonprune.Null(line, d.unread...); err != nil {
				return "", nil, fmt.Errorf("decode watch event: %w", err)
			}
		}
	}
	var ev struct {
		Type   watch.EventType `json:"type"`
		Object json.RawMessage `json:"object"`
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		return "", nil, fmt.Errorf("decode watch event: %w", err)
	}
	obj, _, err := d.decoder.Decode(ev.Object, nil, nil)
	if err != nil {
		return "", nil, fmt.Errorf("decode watch event's %s object: %w", ev.Type, err)
	}
	return ev.Type, obj, nil
}

// line is the next non-empty line, without its newline.
func (d *jsonEvents) line() ([]byte, error) {
	var line []byte
	for {
		chunk, err := d.r.ReadSlice('\n')
		if len(line)+len(chunk) > maxEvent {
			return nil, fmt.Errorf("watch event longer than %d bytes", maxEvent)
		}
		line = append(line, chunk...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			return nil, err
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			return line, nil
		}
	}
}

func (d *jsonEvents) Close() { _ = d.body.Close() }

// newLineReader reads a watch stream's lines through a small buffer; a
// longer line is gathered in a slice of its own.
func newLineReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 4096) }
