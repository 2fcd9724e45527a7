// Decodes CloudEvents (structured JSON, one per line on stdin) with sdk-go's work-agent codec, as the Go agent
// does, and prints one JSON line per event: the decoded ManifestWork's metadata and manifest count, or the error.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"open-cluster-management.io/sdk-go/pkg/cloudevents/clients/work/agent/codec"
)

func main() {
	c := codec.NewManifestBundleCodec()
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<24)
	for scanner.Scan() {
		evt := cloudevents.NewEvent()
		out := map[string]any{}
		if err := json.Unmarshal(scanner.Bytes(), &evt); err != nil {
			out["error"] = "unmarshal: " + err.Error()
		} else if work, err := c.Decode(&evt); err != nil {
			out["error"] = err.Error()
		} else {
			out["metadata"] = work.ObjectMeta
			out["manifests"] = len(work.Spec.Workload.Manifests)
		}
		line, _ := json.Marshal(out)
		fmt.Println(string(line))
	}
}
