// The whole public API in one include: the core (command tasks and the process executor
// included), and the components this build has (their libraries must still be linked:
// asched::sqlite, asched::postgres, asched::redis, asched::mariadb, asched::mqtt, asched::admin).
#pragma once

#include <asched/async_scheduler.hpp>
#include <asched/clock.hpp>
#include <asched/command_task.hpp>
#include <asched/config.hpp>
#include <asched/data_store.hpp>
#include <asched/data_stores/memory_data_store.hpp>
#include <asched/error.hpp>
#include <asched/event_broker.hpp>
#include <asched/event_brokers/local_event_broker.hpp>
#include <asched/events.hpp>
#include <asched/job_context.hpp>
#include <asched/job_executor.hpp>
#include <asched/job_executors/inline_executor.hpp>
#include <asched/job_executors/process_executor.hpp>
#include <asched/job_executors/thread_pool_executor.hpp>
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
#include <asched/version.hpp>

#if ASCHED_WITH_SQLITE
#include <asched/data_stores/sqlite_data_store.hpp>
#endif
#if ASCHED_WITH_POSTGRES
#include <asched/data_stores/postgres_data_store.hpp>
#include <asched/event_brokers/postgres_event_broker.hpp>
#endif
#if ASCHED_WITH_REDIS
#include <asched/event_brokers/redis_event_broker.hpp>
#endif
#if ASCHED_WITH_MARIADB
#include <asched/data_stores/mariadb_data_store.hpp>
#endif
#if ASCHED_WITH_MQTT
#include <asched/event_brokers/mqtt_event_broker.hpp>
#endif
#if ASCHED_WITH_ADMIN
#include <asched/admin_server.hpp>
#endif
