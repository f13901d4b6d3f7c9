// The Benthos peer of scripts/bench-peers.sh: the open-source Benthos core
// (github.com/redpanda-data/benthos/v4, MIT) with its pure and io
// components, and one output plugin of ours, `kafka_franz`, because the
// core ships no Kafka output (Redpanda Connect's is not open source). The
// plugin produces each batch with franz-go and waits for every
// acknowledgement (acks=all, idempotent), as the hub does.
package main

import (
	"context"
	"strings"
	"time"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	"github.com/twmb/franz-go/pkg/kgo"
)

type franzOutput struct {
	client *kgo.Client
	topic  string
	key    *service.InterpolatedString
}

func main() {
	spec := service.NewConfigSpec().
		Summary("Produces each batch to a Kafka topic with franz-go, acks=all, idempotent.").
		Field(service.NewStringField("brokers")).
		Field(service.NewStringField("topic")).
		Field(service.NewInterpolatedStringField("key")).
		Field(service.NewIntField("batch_count").Default(1000)).
		Field(service.NewIntField("max_in_flight").Default(64))
	err := service.RegisterBatchOutput("kafka_franz", spec,
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchOutput, service.BatchPolicy, int, error) {
			brokers, err := conf.FieldString("brokers")
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			topic, err := conf.FieldString("topic")
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			key, err := conf.FieldInterpolatedString("key")
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			client, err := kgo.NewClient(
				kgo.SeedBrokers(strings.Split(brokers, ",")...),
				kgo.RequiredAcks(kgo.AllISRAcks()),
				kgo.ProducerLinger(5*time.Millisecond),
			)
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			count, err := conf.FieldInt("batch_count")
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			inFlight, err := conf.FieldInt("max_in_flight")
			if err != nil {
				return nil, service.BatchPolicy{}, 0, err
			}
			policy := service.BatchPolicy{Count: count, Period: "5ms"}
			return &franzOutput{client: client, topic: topic, key: key}, policy, inFlight, nil
		})
	if err != nil {
		panic(err)
	}
	service.RunCLI(context.Background())
}

func (o *franzOutput) Connect(ctx context.Context) error { return o.client.Ping(ctx) }

func (o *franzOutput) WriteBatch(ctx context.Context, batch service.MessageBatch) error {
	records := make([]*kgo.Record, 0, len(batch))
	for _, m := range batch {
		value, err := m.AsBytes()
		if err != nil {
			return err
		}
		key, err := o.key.TryString(m)
		if err != nil {
			return err
		}
		records = append(records, &kgo.Record{Topic: o.topic, Key: []byte(key), Value: value})
	}
	return o.client.ProduceSync(ctx, records...).FirstErr()
}

func (o *franzOutput) Close(ctx context.Context) error {
	o.client.Close()
	return nil
}
