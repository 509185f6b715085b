"""The embedded Apache Kafka broker (`weir up --broker kafka`): its jars and its process."""
