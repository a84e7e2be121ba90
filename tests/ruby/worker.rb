# A Ruby worker run by the real `sidekiq` server: writes its args to RUBY_WORKER_OUT.
require "sidekiq"
require "json"

class RubyWorker
  include Sidekiq::Worker

  def perform(args)
    File.write(ENV.fetch("RUBY_WORKER_OUT"), JSON.dump(args))
  end
end
