// The whole public API in one include.
#pragma once

#include <asched/async_scheduler.hpp>
#include <asched/clock.hpp>
#include <asched/data_store.hpp>
#include <asched/data_stores/memory_data_store.hpp>
#include <asched/data_stores/postgres_data_store.hpp>
#include <asched/data_stores/sqlite_data_store.hpp>
#include <asched/error.hpp>
#include <asched/event_broker.hpp>
#include <asched/event_brokers/local_event_broker.hpp>
#include <asched/event_brokers/postgres_event_broker.hpp>
#include <asched/event_brokers/redis_event_broker.hpp>
#include <asched/events.hpp>
#include <asched/job_context.hpp>
#include <asched/logger.hpp>
#include <asched/model.hpp>
#include <asched/policies.hpp>
#include <asched/scheduler.hpp>
#include <asched/task_function.hpp>
#include <asched/time.hpp>
#include <asched/trigger.hpp>
#include <asched/triggers/calendar_interval_trigger.hpp>
#include <asched/triggers/combining_triggers.hpp>
#include <asched/triggers/cron_trigger.hpp>
#include <asched/triggers/date_trigger.hpp>
#include <asched/triggers/interval_trigger.hpp>
