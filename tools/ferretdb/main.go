// Command ferretdb-wrapper runs an embedded FerretDB v1 (MongoDB wire protocol)
// for txbox integration tests, and can ping a running instance.
//
// It exists because `go install github.com/FerretDB/FerretDB/cmd/ferretdb`
// panics at start-up without the generated build/version/version.txt file;
// the embeddable package github.com/FerretDB/FerretDB/ferretdb does not.
//
// Usage:
//
//	ferretdb-wrapper serve [-listen 127.0.0.1:27017] [-handler postgresql|sqlite]
//	                       [-sqlite-url file:/dir/] [-postgresql-url postgres://...]
//	ferretdb-wrapper ping  [-uri mongodb://127.0.0.1:27017/] [-timeout 2s]
//	ferretdb-wrapper smoke [-uri mongodb://127.0.0.1:27017/] (insert/find/update/aggregate/drop round trip)
//	ferretdb-wrapper version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/FerretDB/FerretDB/build/version"
	"github.com/FerretDB/FerretDB/ferretdb"
)

// ferretDBVersion is the FerretDB module version pinned in go.mod.
const ferretDBVersion = "v1.24.2"

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}

	var err error

	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "ping":
		err = ping(os.Args[2:])
	case "smoke":
		err = smoke(os.Args[2:])
	case "version":
		fmt.Println(ferretDBVersion)
	case "-h", "-help", "--help", "help":
		usage()
	default:
		usage()
		os.Exit(2)
	}

	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb-wrapper %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: ferretdb-wrapper serve|ping|smoke|version [flags]")
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:27017", "TCP listen address")
	handler := fs.String("handler", "postgresql", "backend handler: postgresql or sqlite")
	sqliteURL := fs.String("sqlite-url", "file:data/", "SQLite URI (directory, must end with /)")
	pgURL := fs.String("postgresql-url", "postgres://127.0.0.1:5432/ferretdb", "PostgreSQL URL")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	_ = fs.Parse(args)

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return err
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	// reported by buildInfo as ferretdbVersion (the embeddable package leaves it "unknown")
	version.Get().Version = ferretDBVersion

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listen},
		Logger:        logger,
		Handler:       *handler,
		PostgreSQLURL: *pgURL,
		SQLiteURL:     *sqliteURL,
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// printed whatever the log level, so that the log always shows what ran
	fmt.Fprintf(os.Stderr, "%s ferretdb-wrapper: FerretDB %s listening on %s, handler %s, log level %s, pid %d\n",
		time.Now().UTC().Format(time.RFC3339), ferretDBVersion, *listen, *handler, level, os.Getpid())

	if err = f.Run(ctx); err != nil {
		return err
	}

	fmt.Fprintf(os.Stderr, "%s ferretdb-wrapper: stopped\n", time.Now().UTC().Format(time.RFC3339))

	return nil
}

// ping does a real MongoDB wire protocol round trip (hello + ping) with the Go driver.
func ping(args []string) error {
	fs := flag.NewFlagSet("ping", flag.ExitOnError)
	uri := fs.String("uri", "mongodb://127.0.0.1:27017/", "MongoDB URI")
	timeout := fs.Duration("timeout", 2*time.Second, "overall timeout")
	quiet := fs.Bool("q", false, "print nothing on success")
	_ = fs.Parse(args)

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	opts := options.Client().ApplyURI(*uri).
		SetServerSelectionTimeout(*timeout).
		SetConnectTimeout(*timeout).
		SetRetryReads(false).
		SetRetryWrites(false)

	client, err := mongo.Connect(ctx, opts)
	if err != nil {
		return err
	}

	defer client.Disconnect(context.Background()) //nolint:errcheck // best effort

	var res bson.M
	if err = client.Database("admin").RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Decode(&res); err != nil {
		return err
	}

	if ok, _ := res["ok"].(float64); ok != 1 {
		return errors.New(fmt.Sprint("unexpected ping reply: ", res))
	}

	if !*quiet {
		var bi bson.M
		if err = client.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&bi); err == nil {
			fmt.Printf("ok: %s (FerretDB %v, MongoDB-compatible %v)\n", *uri, bi["ferretdbVersion"], bi["version"])
		} else {
			fmt.Printf("ok: %s\n", *uri)
		}
	}

	return nil
}

// smoke does a small CRUD round trip in a scratch database and drops it.
func smoke(args []string) error {
	fs := flag.NewFlagSet("smoke", flag.ExitOnError)
	uri := fs.String("uri", "mongodb://127.0.0.1:27017/", "MongoDB URI")
	timeout := fs.Duration("timeout", 20*time.Second, "overall timeout")
	dbName := fs.String("db", "", "scratch database (default: txbox_smoke_<pid>; dropped afterwards)")
	_ = fs.Parse(args)

	dropDB := *dbName == ""
	if dropDB {
		*dbName = fmt.Sprintf("txbox_smoke_%d", os.Getpid())
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	client, err := mongo.Connect(ctx, options.Client().ApplyURI(*uri))
	if err != nil {
		return err
	}

	defer client.Disconnect(context.Background()) //nolint:errcheck // best effort

	db := client.Database(*dbName)
	c := db.Collection(fmt.Sprintf("items_%d", os.Getpid()))

	defer func() {
		if dropDB {
			_ = db.Drop(context.Background())
		} else {
			_ = c.Drop(context.Background())
		}
	}()

	start := time.Now()

	docs := make([]any, 100)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}, {Key: "n", Value: i % 10}, {Key: "s", Value: fmt.Sprint("item-", i)}}
	}

	if _, err = c.InsertMany(ctx, docs); err != nil {
		return fmt.Errorf("insertMany: %w", err)
	}

	if _, err = c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "n", Value: 1}}}); err != nil {
		return fmt.Errorf("createIndex: %w", err)
	}

	u, err := c.UpdateMany(ctx, bson.D{{Key: "n", Value: 3}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 100}}}})
	if err != nil {
		return fmt.Errorf("updateMany: %w", err)
	}

	if u.ModifiedCount != 10 {
		return fmt.Errorf("updateMany modified %d, want 10", u.ModifiedCount)
	}

	n, err := c.CountDocuments(ctx, bson.D{{Key: "n", Value: bson.D{{Key: "$gte", Value: 100}}}})
	if err != nil {
		return fmt.Errorf("count: %w", err)
	}

	if n != 10 {
		return fmt.Errorf("count %d, want 10", n)
	}

	cur, err := c.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}, {Key: "total", Value: bson.D{{Key: "$sum", Value: "$n"}}}}}},
	})
	if err != nil {
		return fmt.Errorf("aggregate: %w", err)
	}

	var agg []bson.M
	if err = cur.All(ctx, &agg); err != nil {
		return fmt.Errorf("aggregate: %w", err)
	}

	var doc bson.M
	if err = c.FindOneAndDelete(ctx, bson.D{{Key: "_id", Value: 42}}).Decode(&doc); err != nil {
		return fmt.Errorf("findOneAndDelete: %w", err)
	}

	fmt.Printf("ok: smoke round trip on %s in %s (aggregate %v)\n", *uri, time.Since(start).Round(time.Millisecond), agg)

	return nil
}
