// Renders an Ollama TEMPLATE with Go's own text/template, as Ollama does, on conversations read
// as JSON from stdin: {"template": "...", "conversations": [[{"role": "user", "content": "..."}]]}.
// Prints a JSON list of rendered strings. Only the standard library: no module download needed.
package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

// Message mirrors the fields Ollama's api.Message gives a template (.Role, .Content).
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Values mirrors the top-level fields Ollama's template renderer passes (.Messages, .System, .Prompt).
type Values struct {
	Messages []Message
	System   string
	Prompt   string
}

type input struct {
	Template      string      `json:"template"`
	Conversations [][]Message `json:"conversations"`
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail(err)
	}
	tmpl, err := template.New("ollama").Option("missingkey=zero").Parse(in.Template)
	if err != nil {
		fail(err)
	}
	out := []string{}
	for _, messages := range in.Conversations {
		var b strings.Builder
		if err := tmpl.Execute(&b, Values{Messages: messages}); err != nil {
			fail(err)
		}
		out = append(out, b.String())
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

func fail(err error) {
	os.Stderr.WriteString(err.Error() + "\n")
	os.Exit(1)
}
