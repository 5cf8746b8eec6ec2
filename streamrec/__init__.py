"""streamrec: a streaming recommender next to your Kafka and Redis.

Applications publish events to Kafka and read ready-made top-K lists from Redis; streamrec's
workers learn online from every event and refresh the lists of active users every minute.
"""

__version__ = "0.1.0"
