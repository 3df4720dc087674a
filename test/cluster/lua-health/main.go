// Command lua-health runs an Argo CD resource health check (health.lua) the way Argo CD does:
// gopher-lua, the object as the global `obj`, only the base, package and table libraries (Argo CD
// opens no string library for a custom check), one second at most. It reads test cases in the
// format of Argo CD's resource_customizations (health_test.yaml: healthStatus + inputPath) and
// prints one JSON line per case: {"inputPath", "want", "got"}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type testCases struct {
	Tests []struct {
		HealthStatus healthStatus `json:"healthStatus"`
		InputPath    string       `json:"inputPath"`
	} `json:"tests"`
}

func main() {
	script := flag.String("script", "", "the health.lua to run")
	tests := flag.String("tests", "", "health_test.yaml, Argo CD's test-case format")
	flag.Parse()
	if err := run(*script, *tests); err != nil {
		fmt.Fprintln(os.Stderr, "lua-health:", err)
		os.Exit(1)
	}
}

func run(scriptPath, testsPath string) error {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(testsPath)
	if err != nil {
		return err
	}
	var cases testCases
	if err := yaml.Unmarshal(raw, &cases); err != nil {
		return fmt.Errorf("%s: %w", testsPath, err)
	}
	out := json.NewEncoder(os.Stdout)
	for _, c := range cases.Tests {
		got, err := check(string(script), filepath.Join(filepath.Dir(testsPath), c.InputPath))
		line := map[string]any{"inputPath": c.InputPath, "want": c.HealthStatus, "got": got}
		if err != nil {
			line["error"] = err.Error()
		}
		if err := out.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

func check(script, inputPath string) (healthStatus, error) {
	raw, err := os.ReadFile(inputPath)
	if err != nil {
		return healthStatus{}, err
	}
	var object map[string]any
	if err := yaml.Unmarshal(raw, &object); err != nil {
		return healthStatus{}, err
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage,
		lua.BaseLibName: lua.OpenBase,
		lua.TabLibName:  lua.OpenTable,
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(open), NRet: 0, Protect: true}, lua.LString(name)); err != nil {
			return healthStatus{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, object))
	if err := l.DoString(script); err != nil {
		return healthStatus{}, err
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return healthStatus{}, fmt.Errorf("the script returned %s, not a table", l.Get(-1).Type())
	}
	return healthStatus{
		Status:  lua.LVAsString(table.RawGetString("status")),
		Message: lua.LVAsString(table.RawGetString("message")),
	}, nil
}

// toLua gives a decoded JSON value the Lua shape Argo CD gives it: objects and arrays as tables.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetH(lua.LString(key), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}
