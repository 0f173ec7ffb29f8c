from alembic import context

from core.models import Base

target_metadata = Base.metadata


def include_object(obj, name, type_, reflected, compare_to):
    # the scheduler's job table is APScheduler's (created in 0002), not a model of ours
    return not (type_ == "table" and name == "scheduler_job")


def run_migrations_online() -> None:
    engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite",
                          include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
